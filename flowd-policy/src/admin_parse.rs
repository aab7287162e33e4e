//! Reading AdminNetworkPolicy and BaselineAdminNetworkPolicy (`v1alpha1`) and
//! ClusterNetworkPolicy (`v1alpha2`) specs onto the one model of `admin.rs`, with the API's own
//! validation (priority range, actions per kind and version, one field per peer and port).

use serde_json::Value;

use crate::admin::{
    AdminPeer, AdminPort, AdminRule, AdminSpec, AdminSubject, ADMIN_TIER, BASELINE_TIER,
};
use crate::endpoint::Protocol;
use crate::error::FieldError;
use crate::k8s_parse::{parse_cidr, parse_label_selector, validate_port_name};
use crate::model::RuleAction;
use crate::selector::Selector;
use crate::value::{type_name, with_field, with_list, Node};

/// Which of the three kinds a spec is, for the fields and actions it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminKind {
    Admin,
    Baseline,
    Cluster,
}

pub(crate) struct ParsedAdmin {
    pub spec: AdminSpec,
    pub tier: &'static str,
    pub priority: Option<f64>,
    pub ingress: bool,
    pub egress: bool,
}

const MAX_PRIORITY: u64 = 1000;

pub(crate) fn parse_admin_spec(spec: Node<'_>, kind: AdminKind) -> Result<ParsedAdmin, FieldError> {
    spec.object()?;
    let tier = match kind {
        AdminKind::Admin => ADMIN_TIER,
        AdminKind::Baseline => BASELINE_TIER,
        AdminKind::Cluster => match spec.opt_str("tier")? {
            Some("Admin") => ADMIN_TIER,
            Some("Baseline") => BASELINE_TIER,
            Some(other) => {
                return Err(field(
                    spec,
                    "tier",
                    format!("unknown tier \"{other}\" (expected Admin or Baseline)"),
                ))
            }
            None => return Err(field(spec, "tier", "tier is missing (Admin or Baseline)")),
        },
    };
    let priority = match (kind, spec.raw("priority")?) {
        (AdminKind::Baseline, None) => None,
        (AdminKind::Baseline, Some(_)) => {
            return Err(field(
                spec,
                "priority",
                "a BaselineAdminNetworkPolicy has no priority",
            ))
        }
        (_, None) => return Err(field(spec, "priority", "priority is missing (0-1000)")),
        (_, Some(Value::Number(n))) => match n.as_u64() {
            Some(p) if p <= MAX_PRIORITY => Some(p as f64),
            _ => {
                return Err(field(
                    spec,
                    "priority",
                    format!("priority {n} is outside 0-1000"),
                ))
            }
        },
        (_, Some(other)) => {
            return Err(field(
                spec,
                "priority",
                format!("expected a number, found {}", type_name(other)),
            ))
        }
    };
    let subject = with_field(spec, "subject", |s| match s {
        Some(s) => parse_subject(s, kind),
        None => Err(field(spec, "subject", "subject is missing")),
    })?;
    let ingress =
        with_list(spec, "ingress", |_, r| parse_rule(r, kind, "from"))?.unwrap_or_default();
    let egress = with_list(spec, "egress", |_, r| parse_rule(r, kind, "to"))?.unwrap_or_default();
    // A policy without rules of a direction does not affect that direction.
    let (has_ingress, has_egress) = (!ingress.is_empty(), !egress.is_empty());
    Ok(ParsedAdmin {
        spec: AdminSpec {
            subject,
            ingress,
            egress,
        },
        tier,
        priority,
        ingress: has_ingress,
        egress: has_egress,
    })
}

fn field(n: Node<'_>, key: &str, message: impl Into<String>) -> FieldError {
    let path = if n.path().is_empty() {
        key.to_string()
    } else {
        format!("{}.{key}", n.path())
    };
    FieldError::new(path, message)
}

/// The one key set of an object that must have exactly one of `keys`.
fn one_of<'a>(n: Node<'_>, keys: &[&'a str]) -> Result<&'a str, FieldError> {
    let map = n.object()?;
    let present: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    match present.as_slice() {
        [one] => Ok(one),
        [] => Err(n.err(format!("needs one of {}", keys.join(", ")))),
        many => Err(n.err(format!(
            "sets {} (exactly one is allowed)",
            many.join(" and ")
        ))),
    }
}

fn selector(n: Node<'_>, key: &str) -> Result<Selector, FieldError> {
    with_field(n, key, |s| match s {
        Some(s) => parse_label_selector(s),
        None => Err(field(n, key, format!("{key} is missing"))),
    })
}

fn parse_pods(n: Node<'_>, kind: AdminKind) -> Result<(Selector, Selector), FieldError> {
    n.object()?;
    // v1alpha2 made the namespace selector optional (all namespaces).
    let namespaces = if kind == AdminKind::Cluster && !n.has("namespaceSelector") {
        Selector::all()
    } else {
        selector(n, "namespaceSelector")?
    };
    Ok((namespaces, selector(n, "podSelector")?))
}

fn parse_subject(s: Node<'_>, kind: AdminKind) -> Result<AdminSubject, FieldError> {
    match one_of(s, &["namespaces", "pods"])? {
        "namespaces" => Ok(AdminSubject::Namespaces(selector(s, "namespaces")?)),
        _ => with_field(s, "pods", |p| {
            let (namespaces, pods) = parse_pods(p.unwrap_or(s), kind)?;
            Ok(AdminSubject::Pods { namespaces, pods })
        }),
    }
}

fn parse_action(rule: Node<'_>, kind: AdminKind) -> Result<RuleAction, FieldError> {
    let Some(action) = rule.opt_str("action")? else {
        return Err(field(rule, "action", "rule needs an action"));
    };
    let allowed: &[&str] = match kind {
        AdminKind::Admin => &["Allow", "Deny", "Pass"],
        AdminKind::Baseline => &["Allow", "Deny"],
        AdminKind::Cluster => &["Accept", "Deny", "Pass"],
    };
    if !allowed.contains(&action) {
        return Err(field(
            rule,
            "action",
            format!(
                "unknown action \"{action}\" (expected {})",
                allowed.join(", ")
            ),
        ));
    }
    Ok(match action {
        "Allow" | "Accept" => RuleAction::Allow,
        "Deny" => RuleAction::Deny,
        _ => RuleAction::Pass,
    })
}

fn parse_rule(rule: Node<'_>, kind: AdminKind, peers_key: &str) -> Result<AdminRule, FieldError> {
    rule.object()?;
    let name = rule.opt_str("name")?.map(str::to_string);
    let action = parse_action(rule, kind)?;
    let egress = peers_key == "to";
    let peers = with_list(rule, peers_key, |_, p| parse_peer(p, kind, egress))?.unwrap_or_default();
    if peers.is_empty() {
        return Err(field(
            rule,
            peers_key,
            format!("{peers_key} needs at least one peer"),
        ));
    }
    let ports = if kind == AdminKind::Cluster {
        with_list(rule, "protocols", |_, p| parse_protocol(p))?
    } else {
        with_list(rule, "ports", |_, p| parse_port(p))?
    };
    Ok(AdminRule {
        name,
        action,
        peers,
        ports,
    })
}

fn parse_peer(p: Node<'_>, kind: AdminKind, egress: bool) -> Result<AdminPeer, FieldError> {
    let keys: &[&str] = match (egress, kind) {
        (false, _) => &["namespaces", "pods"],
        (true, AdminKind::Baseline) => &["namespaces", "pods", "nodes", "networks"],
        (true, _) => &["namespaces", "pods", "nodes", "networks", "domainNames"],
    };
    match one_of(p, keys)? {
        "namespaces" => Ok(AdminPeer::Namespaces(selector(p, "namespaces")?)),
        "pods" => with_field(p, "pods", |n| {
            let (namespaces, pods) = parse_pods(n.unwrap_or(p), kind)?;
            Ok(AdminPeer::Pods { namespaces, pods })
        }),
        "nodes" => Ok(AdminPeer::Nodes(selector(p, "nodes")?)),
        "networks" => {
            let nets = with_list(p, "networks", |_, c| parse_cidr(c))?.unwrap_or_default();
            if nets.is_empty() {
                return Err(field(p, "networks", "networks needs at least one CIDR"));
            }
            Ok(AdminPeer::Networks(nets))
        }
        _ => Ok(AdminPeer::DomainNames(
            p.opt_string_list("domainNames")?.unwrap_or_default(),
        )),
    }
}

fn port_number(n: Node<'_>, key: &str) -> Result<u16, FieldError> {
    match n.raw(key)? {
        Some(Value::Number(v)) => match v.as_u64() {
            Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
            _ => Err(field(n, key, format!("port {v} is outside 1-65535"))),
        },
        Some(other) => Err(field(
            n,
            key,
            format!("expected a port number, found {}", type_name(other)),
        )),
        None => Err(field(n, key, format!("{key} is missing"))),
    }
}

/// `protocol` of a v1alpha1 port: TCP when absent.
fn port_protocol(n: Node<'_>) -> Result<Protocol, FieldError> {
    match n.opt_str("protocol")? {
        None | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(other) => Err(field(
            n,
            "protocol",
            format!("unknown protocol \"{other}\" (expected TCP, UDP or SCTP)"),
        )),
    }
}

fn range(n: Node<'_>, protocol: Protocol) -> Result<AdminPort, FieldError> {
    let (start, end) = (port_number(n, "start")?, port_number(n, "end")?);
    if start > end {
        return Err(n.err(format!("port range {start}-{end} starts above its end")));
    }
    Ok(AdminPort::Range {
        protocol,
        start,
        end,
    })
}

fn named(n: Node<'_>, key: &str) -> Result<AdminPort, FieldError> {
    let name = n.opt_str(key)?.unwrap_or_default();
    validate_port_name(name).map_err(|m| field(n, key, m))?;
    Ok(AdminPort::Named(name.to_string()))
}

/// v1alpha1: `portNumber`, `namedPort` or `portRange`.
fn parse_port(n: Node<'_>) -> Result<AdminPort, FieldError> {
    match one_of(n, &["portNumber", "namedPort", "portRange"])? {
        "portNumber" => with_field(n, "portNumber", |p| {
            let p = p.unwrap_or(n);
            Ok(AdminPort::Number {
                protocol: port_protocol(p)?,
                port: port_number(p, "port")?,
            })
        }),
        "namedPort" => named(n, "namedPort"),
        _ => with_field(n, "portRange", |p| {
            let p = p.unwrap_or(n);
            range(p, port_protocol(p)?)
        }),
    }
}

/// v1alpha2: `tcp`, `udp` or `sctp` with a `destinationPort` (`number` or `range`), or
/// `destinationNamedPort`.
fn parse_protocol(n: Node<'_>) -> Result<AdminPort, FieldError> {
    let which = one_of(n, &["tcp", "udp", "sctp", "destinationNamedPort"])?;
    let protocol = match which {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return named(n, "destinationNamedPort"),
    };
    with_field(n, which, |p| {
        let p = p.unwrap_or(n);
        with_field(p, "destinationPort", |port| {
            let Some(port) = port else {
                return Err(field(p, "destinationPort", "destinationPort is missing"));
            };
            match one_of(port, &["number", "range"])? {
                "number" => Ok(AdminPort::Number {
                    protocol,
                    port: port_number(port, "number")?,
                }),
                _ => with_field(port, "range", |r| range(r.unwrap_or(port), protocol)),
            }
        })
    })
}
