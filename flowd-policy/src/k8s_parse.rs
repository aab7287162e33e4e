//! Reading Kubernetes NetworkPolicy specs (and label selectors) from YAML/JSON.

use std::str::FromStr;

use ipnet::IpNet;
use serde_json::Value;

use crate::endpoint::Protocol;
use crate::error::FieldError;
use crate::k8s::{K8sPeer, K8sPort, K8sRule, K8sSpec, PortRef};
use crate::selector::{Expr, Selector};
use crate::value::{type_name, with_field, with_list, Node};

/// The parts of a Kubernetes policy spec the loader needs.
pub(crate) struct ParsedK8s {
    pub spec: K8sSpec,
    pub ingress: bool,
    pub egress: bool,
}

pub(crate) fn parse_k8s_spec(spec: Node<'_>) -> Result<ParsedK8s, FieldError> {
    spec.object()?;
    let pod_selector = with_field(spec, "podSelector", |n| match n {
        Some(n) => parse_label_selector(n),
        None => Ok(Selector::all()),
    })?;
    let ingress = with_list(spec, "ingress", |_, r| parse_rule(r, "from"))?;
    let egress = with_list(spec, "egress", |_, r| parse_rule(r, "to"))?;
    let types = with_list(spec, "policyTypes", |_, t| match t.as_str()? {
        "Ingress" => Ok(true),
        "Egress" => Ok(false),
        other => Err(t.err(format!(
            "unknown policy type \"{other}\" (expected Ingress or Egress)"
        ))),
    })?;
    // Kubernetes defaulting: Ingress always, Egress when there are egress rules.
    let (is_ingress, is_egress) = match &types {
        Some(t) if !t.is_empty() => (t.contains(&true), t.contains(&false)),
        _ => (true, egress.as_ref().is_some_and(|e| !e.is_empty())),
    };
    Ok(ParsedK8s {
        spec: K8sSpec {
            pod_selector,
            ingress: ingress.unwrap_or_default(),
            egress: egress.unwrap_or_default(),
        },
        ingress: is_ingress,
        egress: is_egress,
    })
}

fn parse_rule(rule: Node<'_>, peers_key: &str) -> Result<K8sRule, FieldError> {
    rule.object()?;
    let peers = with_list(rule, peers_key, |_, p| parse_peer(p))?.unwrap_or_default();
    let ports = with_list(rule, "ports", |_, p| parse_port(p))?.unwrap_or_default();
    Ok(K8sRule { peers, ports })
}

fn parse_peer(peer: Node<'_>) -> Result<K8sPeer, FieldError> {
    peer.object()?;
    let pods = with_field(peer, "podSelector", |n| {
        n.map(parse_label_selector).transpose()
    })?;
    let namespaces = with_field(peer, "namespaceSelector", |n| {
        n.map(parse_label_selector).transpose()
    })?;
    let ip_block = with_field(peer, "ipBlock", |n| n.map(parse_ip_block).transpose())?;
    match ip_block {
        Some(block) => {
            if pods.is_some() || namespaces.is_some() {
                return Err(peer.err(
                    "ipBlock cannot be combined with podSelector or namespaceSelector in one peer",
                ));
            }
            Ok(block)
        }
        None => {
            if pods.is_none() && namespaces.is_none() {
                return Err(
                    peer.err("a peer needs one of podSelector, namespaceSelector or ipBlock")
                );
            }
            Ok(K8sPeer::Pods { pods, namespaces })
        }
    }
}

fn parse_ip_block(block: Node<'_>) -> Result<K8sPeer, FieldError> {
    block.object()?;
    let cidr = with_field(block, "cidr", |n| match n {
        Some(n) => parse_cidr(n),
        None => Err(block.err("ipBlock.cidr is required")),
    })?;
    let except = with_list(block, "except", |_, e| {
        let net = parse_cidr(e)?;
        if !cidr.contains(&net) {
            return Err(e.err(format!("except {net} is not inside cidr {cidr}")));
        }
        Ok(net)
    })?
    .unwrap_or_default();
    Ok(K8sPeer::IpBlock { cidr, except })
}

/// A CIDR, or a bare address taken as a host route (Calico accepts those).
pub(crate) fn parse_cidr(n: Node<'_>) -> Result<IpNet, FieldError> {
    let s = n.as_str()?.trim();
    if let Ok(net) = IpNet::from_str(s) {
        return Ok(net.trunc());
    }
    if let Ok(ip) = std::net::IpAddr::from_str(s) {
        return Ok(IpNet::from(ip));
    }
    Err(n.err(format!("\"{s}\" is not a valid CIDR")))
}

fn parse_port(port: Node<'_>) -> Result<K8sPort, FieldError> {
    port.object()?;
    let protocol = match port.opt_str("protocol")? {
        None => Protocol::Tcp,
        Some(p) => match p.to_ascii_uppercase().as_str() {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            _ => {
                return Err(FieldError::new(
                    format!("{}.protocol", port.path()),
                    format!("unsupported protocol \"{p}\" (expected TCP, UDP or SCTP)"),
                ))
            }
        },
    };
    let port_ref = with_field(port, "port", |n| n.map(parse_port_ref).transpose())?;
    let end_port = with_field(port, "endPort", |n| n.map(port_number).transpose())?;
    if let Some(end) = end_port {
        match &port_ref {
            Some(PortRef::Number(p)) if end >= *p => {}
            Some(PortRef::Number(p)) => {
                return Err(FieldError::new(
                    format!("{}.endPort", port.path()),
                    format!("endPort {end} is below port {p}"),
                ))
            }
            _ => {
                return Err(FieldError::new(
                    format!("{}.endPort", port.path()),
                    "endPort needs a numeric port",
                ))
            }
        }
    }
    Ok(K8sPort {
        protocol,
        port: port_ref,
        end_port,
    })
}

fn port_number(n: Node<'_>) -> Result<u16, FieldError> {
    match n.value {
        Value::Number(num) => num
            .as_u64()
            .filter(|p| (1..=65535).contains(p))
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| n.err(format!("port {num} is outside 1-65535"))),
        other => Err(n.err(format!(
            "expected a port number, found {}",
            type_name(other)
        ))),
    }
}

fn parse_port_ref(n: Node<'_>) -> Result<PortRef, FieldError> {
    match n.value {
        Value::Number(_) => Ok(PortRef::Number(port_number(n)?)),
        Value::String(s) => {
            // An all-digit string is a number written with quotes, not a name.
            if let Ok(p) = s.parse::<u16>() {
                if p == 0 {
                    return Err(n.err("port 0 is outside 1-65535"));
                }
                return Ok(PortRef::Number(p));
            }
            validate_port_name(s).map_err(|m| n.err(m))?;
            Ok(PortRef::Name(s.clone()))
        }
        other => Err(n.err(format!(
            "expected a port number or name, found {}",
            type_name(other)
        ))),
    }
}

/// IANA_SVC_NAME: 1-15 lowercase alphanumerics or '-', at least one letter.
pub(crate) fn validate_port_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{s}\" is not a valid port name (1-15 lowercase letters, digits or '-')"
        ))
    }
}

/// A Kubernetes LabelSelector, compiled to the shared selector tree.
/// An empty selector (`{}`) selects everything.
pub(crate) fn parse_label_selector(n: Node<'_>) -> Result<Selector, FieldError> {
    n.object()?;
    let mut parts = Vec::new();
    if let Some(labels) = n.opt_string_map("matchLabels")? {
        for (k, v) in labels {
            parts.push(Expr::Eq(k, v));
        }
    }
    let exprs = with_list(n, "matchExpressions", |_, e| {
        e.object()?;
        let key = e
            .opt_str("key")?
            .ok_or_else(|| e.err("matchExpressions entry needs a key"))?
            .to_string();
        let op = e
            .opt_str("operator")?
            .ok_or_else(|| e.err("matchExpressions entry needs an operator"))?;
        let values = e.opt_string_list("values")?.unwrap_or_default();
        let vpath = format!("{}.values", e.path());
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    return Err(FieldError::new(
                        vpath,
                        format!("operator {op} needs values"),
                    ));
                }
                Ok(if op == "In" {
                    Expr::In(key, values)
                } else {
                    Expr::NotIn(key, values)
                })
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    return Err(FieldError::new(
                        vpath,
                        format!("operator {op} takes no values"),
                    ));
                }
                Ok(if op == "Exists" {
                    Expr::Has(key)
                } else {
                    Expr::Not(Box::new(Expr::Has(key)))
                })
            }
            other => Err(FieldError::new(
                format!("{}.operator", e.path()),
                format!(
                    "unknown operator \"{other}\" (expected In, NotIn, Exists or DoesNotExist)"
                ),
            )),
        }
    })?
    .unwrap_or_default();
    parts.extend(exprs);
    Ok(match parts.len() {
        0 => Selector::all(),
        1 => Selector::from_expr(parts.remove(0)),
        _ => Selector::from_expr(Expr::And(parts)),
    })
}
