//! Reading projectcalico.org/v3 policy specs from YAML/JSON.

use serde_json::Value;

use crate::calico::{
    CalicoRule, CalicoSpec, EndpointScope, EntityRule, IcmpMatch, NamespaceScope, PortMatch,
    ServiceAccountMatch,
};
use crate::endpoint::Protocol;
use crate::error::FieldError;
use crate::k8s_parse::{parse_cidr, validate_port_name};
use crate::model::{RuleAction, StagedAction, DEFAULT_TIER};
use crate::selector::Selector;
use crate::value::{type_name, with_field, with_list, Node};

pub(crate) struct ParsedCalico {
    pub spec: CalicoSpec,
    pub tier: String,
    pub order: Option<f64>,
    pub ingress: bool,
    pub egress: bool,
    pub staged_action: Option<StagedAction>,
    /// doNotTrack / preDNAT policies apply to host endpoints only.
    pub host_only: bool,
}

/// `namespace` is the policy's namespace (None for the global kinds).
pub(crate) fn parse_calico_spec(
    spec: Node<'_>,
    namespace: Option<&str>,
    staged: bool,
) -> Result<ParsedCalico, FieldError> {
    spec.object()?;
    let selector = opt_selector(spec, "selector")?.unwrap_or_else(Selector::all);
    let namespace_selector = if namespace.is_none() {
        opt_selector(spec, "namespaceSelector")?
    } else {
        None
    };
    let service_account_selector = opt_selector(spec, "serviceAccountSelector")?;
    let order = spec.opt_f64("order")?;
    let tier = match spec.opt_str("tier")? {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => DEFAULT_TIER.to_string(),
    };
    let ingress = with_list(spec, "ingress", |_, r| parse_rule(r, namespace))?.unwrap_or_default();
    let egress = with_list(spec, "egress", |_, r| parse_rule(r, namespace))?.unwrap_or_default();
    let types = with_list(spec, "types", |_, t| {
        match t.as_str()?.to_ascii_lowercase().as_str() {
            "ingress" => Ok(true),
            "egress" => Ok(false),
            _ => Err(t.err(format!(
                "unknown type \"{}\" (expected Ingress or Egress)",
                t.as_str()?
            ))),
        }
    })?;
    // Calico's documented default: Egress only when there are egress rules and
    // no ingress rules; both when both; otherwise Ingress.
    let (is_ingress, is_egress) = match &types {
        Some(t) if !t.is_empty() => (t.contains(&true), t.contains(&false)),
        _ => match (ingress.is_empty(), egress.is_empty()) {
            (_, true) => (true, false),
            (true, false) => (false, true),
            (false, false) => (true, true),
        },
    };
    let host_only = bool_field(spec, "doNotTrack")? || bool_field(spec, "preDNAT")?;
    let staged_action = if staged {
        Some(match spec.opt_str("stagedAction")? {
            None | Some("Set") => StagedAction::Set,
            Some("Delete") => StagedAction::Delete,
            Some(other) => {
                return Err(FieldError::new(
                    format!("{}.stagedAction", spec.path()),
                    format!("unknown stagedAction \"{other}\" (expected Set or Delete)"),
                ))
            }
        })
    } else {
        None
    };
    Ok(ParsedCalico {
        spec: CalicoSpec {
            selector,
            namespace_selector,
            service_account_selector,
            ingress,
            egress,
        },
        tier,
        order,
        ingress: is_ingress,
        egress: is_egress,
        staged_action,
        host_only,
    })
}

fn bool_field(n: Node<'_>, key: &str) -> Result<bool, FieldError> {
    match n.raw(key)? {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(FieldError::new(
            format!("{}.{key}", n.path()),
            format!("expected true or false, found {}", type_name(other)),
        )),
    }
}

/// A selector field; empty strings count as absent.
pub(crate) fn opt_selector(n: Node<'_>, key: &str) -> Result<Option<Selector>, FieldError> {
    match n.opt_str(key)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => Selector::parse(s).map(Some).map_err(|e| {
            let path = if n.path().is_empty() {
                key.to_string()
            } else {
                format!("{}.{key}", n.path())
            };
            FieldError::new(path, e.to_string())
        }),
    }
}

fn parse_rule(rule: Node<'_>, namespace: Option<&str>) -> Result<CalicoRule, FieldError> {
    rule.object()?;
    let action = match rule.opt_str("action")? {
        None => return Err(rule.err("rule needs an action (Allow, Deny, Pass or Log)")),
        Some(a) => match a.to_ascii_lowercase().as_str() {
            "allow" => RuleAction::Allow,
            "deny" => RuleAction::Deny,
            "pass" => RuleAction::Pass,
            "log" => RuleAction::Log,
            _ => {
                return Err(FieldError::new(
                    format!("{}.action", rule.path()),
                    format!("unknown action \"{a}\" (expected Allow, Deny, Pass or Log)"),
                ))
            }
        },
    };
    let protocol = with_field(rule, "protocol", |n| n.map(parse_protocol).transpose())?;
    let not_protocol = with_field(rule, "notProtocol", |n| n.map(parse_protocol).transpose())?;
    let ip_version = with_field(rule, "ipVersion", |n| {
        n.map(|n| match n.value.as_u64() {
            Some(4) => Ok(4u8),
            Some(6) => Ok(6u8),
            _ => Err(n.err(format!("expected 4 or 6, found {}", type_name(n.value)))),
        })
        .transpose()
    })?;
    let icmp = with_field(rule, "icmp", |n| n.map(parse_icmp).transpose())?.flatten();
    let not_icmp = with_field(rule, "notICMP", |n| n.map(parse_icmp).transpose())?.flatten();
    // Calico's own validation: ICMP criteria only with an ICMP protocol.
    if (icmp.is_some() || not_icmp.is_some()) && !protocol.is_some_and(Protocol::is_icmp) {
        return Err(FieldError::new(
            format!("{}.protocol", rule.path()),
            "icmp and notICMP need protocol ICMP or ICMPv6".to_string(),
        ));
    }
    let source = with_field(rule, "source", |n| match n {
        Some(n) => parse_entity(n, namespace),
        None => Ok(EntityRule::default()),
    })?;
    let destination = with_field(rule, "destination", |n| match n {
        Some(n) => parse_entity(n, namespace),
        None => Ok(EntityRule::default()),
    })?;
    Ok(CalicoRule {
        action,
        protocol,
        not_protocol,
        ip_version,
        icmp,
        not_icmp,
        http: rule.has("http"),
        source,
        destination,
    })
}

/// `{type, code}`; `{}` has no criteria (None). A code needs a type, as Calico validates.
fn parse_icmp(n: Node<'_>) -> Result<Option<IcmpMatch>, FieldError> {
    n.object()?;
    let number = |key: &str, max: u64| -> Result<Option<u8>, FieldError> {
        match n.raw(key)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(v)) => match v.as_u64() {
                Some(v) if v <= max => Ok(Some(v as u8)),
                _ => Err(FieldError::new(
                    format!("{}.{key}", n.path()),
                    format!("ICMP {key} {v} is outside 0-{max}"),
                )),
            },
            Some(other) => Err(FieldError::new(
                format!("{}.{key}", n.path()),
                format!("expected a number, found {}", type_name(other)),
            )),
        }
    };
    let kind = number("type", 254)?;
    let code = number("code", 255)?;
    match (kind, code) {
        (Some(kind), code) => Ok(Some(IcmpMatch { kind, code })),
        (None, None) => Ok(None),
        (None, Some(_)) => Err(n.err("an ICMP code needs an ICMP type")),
    }
}

fn parse_protocol(n: Node<'_>) -> Result<Protocol, FieldError> {
    match n.value {
        Value::Number(num) => num
            .as_u64()
            .and_then(|v| u8::try_from(v).ok())
            .map(Protocol::from_number)
            .ok_or_else(|| n.err(format!("protocol number {num} is outside 0-255"))),
        Value::String(s) => Protocol::parse(s).ok_or_else(|| {
            n.err(format!(
                "unknown protocol \"{s}\" (expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 0-255)"
            ))
        }),
        other => Err(n.err(format!("expected a protocol, found {}", type_name(other)))),
    }
}

fn parse_entity(n: Node<'_>, namespace: Option<&str>) -> Result<EntityRule, FieldError> {
    n.object()?;
    let nets = with_list(n, "nets", |_, c| parse_cidr(c))?.unwrap_or_default();
    let not_nets = with_list(n, "notNets", |_, c| parse_cidr(c))?.unwrap_or_default();
    let selector = opt_selector(n, "selector")?;
    let not_selector = opt_selector(n, "notSelector")?;
    let namespace_selector = opt_selector(n, "namespaceSelector")?;
    let ports = with_list(n, "ports", |_, p| parse_port(p))?.unwrap_or_default();
    let not_ports = with_list(n, "notPorts", |_, p| parse_port(p))?.unwrap_or_default();
    let service_accounts = with_field(n, "serviceAccounts", |sa| {
        let Some(sa) = sa else { return Ok(None) };
        sa.object()?;
        let names = sa.opt_string_list("names")?.unwrap_or_default();
        let selector = opt_selector(sa, "selector")?;
        Ok((!names.is_empty() || selector.is_some())
            .then_some(ServiceAccountMatch { names, selector }))
    })?;
    let service = with_field(n, "services", |s| {
        let Some(s) = s else { return Ok(None) };
        s.object()?;
        let Some(name) = s.opt_str("name")?.filter(|n| !n.is_empty()) else {
            return Err(s.err("services needs the service's name"));
        };
        // Calico: a global policy's service match names its namespace.
        let Some(ns) = s
            .opt_str("namespace")?
            .or(namespace)
            .filter(|n| !n.is_empty())
        else {
            return Err(s.err("services needs a namespace in a global policy"));
        };
        Ok(Some(format!("{ns}/{name}")))
    })?;

    // Mirrors libcalico-go getEndpointSelector (see module docs of calico.rs).
    let positive = selector.is_some() || service_accounts.is_some();
    let ns_scope = match (&namespace_selector, namespace) {
        (Some(sel), _) => Some(namespace_scope(sel)),
        (None, Some(ns)) => Some(NamespaceScope::Same(ns.to_string())),
        (None, None) => None,
    };
    let ns_applies =
        ns_scope.is_some() && (positive || not_selector.is_some() || namespace_selector.is_some());
    let scope = if positive || ns_applies {
        Some(EndpointScope {
            namespaces: if ns_applies {
                ns_scope.unwrap_or(NamespaceScope::Any)
            } else {
                NamespaceScope::Any
            },
            service_accounts,
            selector,
        })
    } else {
        None
    };
    Ok(EntityRule {
        nets,
        not_nets,
        scope,
        not_selector,
        ports,
        not_ports,
        service,
    })
}

fn namespace_scope(sel: &Selector) -> NamespaceScope {
    NamespaceScope::Selected(sel.clone())
}

fn parse_port(n: Node<'_>) -> Result<PortMatch, FieldError> {
    let num = |v: u64| -> Result<u16, FieldError> {
        u16::try_from(v).map_err(|_| n.err(format!("port {v} is outside 0-65535")))
    };
    match n.value {
        Value::Number(x) => match x.as_u64() {
            Some(v) => {
                let p = num(v)?;
                Ok(PortMatch::Range(p, p))
            }
            None => Err(n.err(format!("port {x} is not a whole number"))),
        },
        Value::String(s) => {
            let s = s.trim();
            if let Some((a, b)) = s.split_once(':') {
                let parse = |t: &str| -> Result<u16, FieldError> {
                    t.trim()
                        .parse::<u64>()
                        .map_err(|_| {
                            n.err(format!(
                                "\"{s}\" is not a port range (expected \"start:end\")"
                            ))
                        })
                        .and_then(num)
                };
                let (lo, hi) = (parse(a)?, parse(b)?);
                if lo > hi {
                    return Err(n.err(format!("port range \"{s}\" has start above end")));
                }
                return Ok(PortMatch::Range(lo, hi));
            }
            if let Ok(v) = s.parse::<u64>() {
                let p = num(v)?;
                return Ok(PortMatch::Range(p, p));
            }
            validate_port_name(s).map_err(|m| n.err(m))?;
            Ok(PortMatch::Named(s.to_string()))
        }
        other => Err(n.err(format!(
            "expected a port, range \"a:b\" or port name, found {}",
            type_name(other)
        ))),
    }
}
