use std::net::IpAddr;

use ipnet::IpNet;

use flowd_policy::{Selector, SelectorError};

use crate::proto::v1 as pb;

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("filter field {field}: {value:?} is not an IP address or CIDR (e.g. 198.18.0.0/15, fd00::1)")]
    Address { field: &'static str, value: String },
    #[error("filter field {field}: port {value} is out of range (0-65535)")]
    Port { field: &'static str, value: u32 },
    #[error("filter field {field}: {value} is not a known value")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("filter field {field}: an empty string matches nothing; leave the field out instead")]
    Empty { field: &'static str },
    #[error(transparent)]
    Selector(#[from] SelectorError),
}

fn addresses(field: &'static str, values: &[String]) -> Result<Vec<IpNet>, FilterError> {
    values
        .iter()
        .map(|v| {
            v.parse::<IpNet>()
                .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| FilterError::Address {
                    field,
                    value: v.clone(),
                })
        })
        .collect()
}

fn ports(field: &'static str, values: &[u32]) -> Result<Vec<u32>, FilterError> {
    match values.iter().find(|p| **p > 65535) {
        Some(bad) => Err(FilterError::Port { field, value: *bad }),
        None => Ok(values.to_vec()),
    }
}

fn enums<E: TryFrom<i32>>(field: &'static str, values: &[i32]) -> Result<Vec<i32>, FilterError> {
    match values.iter().find(|v| E::try_from(**v).is_err()) {
        Some(bad) => Err(FilterError::UnknownEnum { field, value: *bad }),
        None => Ok(values.to_vec()),
    }
}

fn strings(field: &'static str, values: &[String]) -> Result<Vec<String>, FilterError> {
    if values.iter().any(String::is_empty) {
        return Err(FilterError::Empty { field });
    }
    Ok(values.to_vec())
}

/// One compiled `FlowFilter`: every set field must match.
#[derive(Debug, Default)]
struct Filter {
    source_ip: Vec<IpNet>,
    destination_ip: Vec<IpNet>,
    ip: Vec<IpNet>,
    source_port: Vec<u32>,
    destination_port: Vec<u32>,
    port: Vec<u32>,
    protocol: Vec<i32>,
    ip_version: Vec<i32>,
    verdict: Vec<i32>,
    drop_reason: Vec<String>,
    direction: Vec<i32>,
    outcome: Vec<i32>,
    namespace: Vec<String>,
    pod: Vec<String>,
    label: Vec<Selector>,
    workload: Vec<String>,
    service: Vec<String>,
    policy: Vec<String>,
    node: Vec<String>,
    interface: Vec<String>,
}

fn any_or_unset<T>(wanted: &[T], test: impl Fn(&T) -> bool) -> bool {
    wanted.is_empty() || wanted.iter().any(test)
}

fn ip_in(nets: &[IpNet], endpoint: Option<&pb::Endpoint>) -> bool {
    let Some(ip) = endpoint.and_then(|e| e.ip.parse::<IpAddr>().ok()) else {
        return false;
    };
    nets.iter().any(|net| net.contains(&ip))
}

fn sides(flow: &pb::Flow) -> [Option<&pb::Endpoint>; 2] {
    [flow.source.as_ref(), flow.destination.as_ref()]
}

fn pod_matches(pattern: &str, endpoint: &pb::Endpoint) -> bool {
    match pattern.split_once('/') {
        Some((namespace, prefix)) => {
            endpoint.namespace == namespace && endpoint.name.starts_with(prefix)
        }
        None => endpoint.kind == pb::EndpointKind::Pod as i32 && endpoint.name.starts_with(pattern),
    }
}

fn workload_matches(pattern: &str, endpoint: &pb::Endpoint) -> bool {
    let Some(workload) = &endpoint.workload else {
        return false;
    };
    match pattern.split_once('/') {
        Some((kind, name)) => workload.kind.eq_ignore_ascii_case(kind) && workload.name == name,
        None => workload.name == pattern,
    }
}

fn service_matches(pattern: &str, endpoint: &pb::Endpoint) -> bool {
    endpoint.services.iter().any(|service| {
        service == pattern
            || (!pattern.contains('/')
                && service
                    .rsplit_once('/')
                    .is_some_and(|(_, name)| name == pattern))
    })
}

fn policy_matches(pattern: &str, policy: Option<&pb::PolicyRef>) -> bool {
    let Some(policy) = policy else {
        return false;
    };
    match pattern.split_once('/') {
        Some((scope, name)) => {
            policy.name == name && (policy.namespace == scope || policy.tier == scope)
        }
        None => policy.name == pattern,
    }
}

impl Filter {
    fn compile(f: &pb::FlowFilter) -> Result<Self, FilterError> {
        Ok(Self {
            source_ip: addresses("source_ip", &f.source_ip)?,
            destination_ip: addresses("destination_ip", &f.destination_ip)?,
            ip: addresses("ip", &f.ip)?,
            source_port: ports("source_port", &f.source_port)?,
            destination_port: ports("destination_port", &f.destination_port)?,
            port: ports("port", &f.port)?,
            protocol: f.protocol.clone(),
            ip_version: enums::<pb::IpVersion>("ip_version", &f.ip_version)?,
            verdict: enums::<pb::Verdict>("verdict", &f.verdict)?,
            drop_reason: strings("drop_reason", &f.drop_reason)?,
            direction: enums::<pb::TrafficDirection>("direction", &f.direction)?,
            outcome: enums::<pb::Outcome>("outcome", &f.outcome)?,
            namespace: strings("namespace", &f.namespace)?,
            pod: strings("pod", &f.pod)?,
            label: f
                .label
                .iter()
                .map(|s| Selector::parse_kubernetes(s))
                .collect::<Result<_, _>>()?,
            workload: strings("workload", &f.workload)?,
            service: strings("service", &f.service)?,
            policy: strings("policy", &f.policy)?,
            node: strings("node", &f.node)?,
            interface: strings("interface", &f.interface)?,
        })
    }

    fn matches(&self, flow: &pb::Flow) -> bool {
        let [source, destination] = sides(flow);
        let port = |e: Option<&pb::Endpoint>| e.map(|e| e.port);
        let request_direction = flow.request.as_ref().map(|r| r.direction).unwrap_or(0);
        (self.source_ip.is_empty() || ip_in(&self.source_ip, source))
            && (self.destination_ip.is_empty() || ip_in(&self.destination_ip, destination))
            && (self.ip.is_empty() || sides(flow).iter().any(|e| ip_in(&self.ip, *e)))
            && any_or_unset(&self.source_port, |p| port(source) == Some(*p))
            && any_or_unset(&self.destination_port, |p| port(destination) == Some(*p))
            && any_or_unset(&self.port, |p| {
                port(source) == Some(*p) || port(destination) == Some(*p)
            })
            && any_or_unset(&self.protocol, |p| flow.protocol == *p)
            && any_or_unset(&self.ip_version, |v| flow.ip_version == *v)
            && any_or_unset(&self.verdict, |v| flow.verdict == *v)
            && any_or_unset(&self.drop_reason, |r| flow.drop_reason == *r)
            && any_or_unset(&self.direction, |d| request_direction == *d)
            && any_or_unset(&self.outcome, |o| flow.outcome == *o)
            && any_or_unset(&self.namespace, |n| {
                sides(flow).iter().flatten().any(|e| e.namespace == *n)
            })
            && any_or_unset(&self.pod, |p| {
                sides(flow).iter().flatten().any(|e| pod_matches(p, e))
            })
            && any_or_unset(&self.label, |selector| {
                sides(flow)
                    .iter()
                    .flatten()
                    .any(|e| !e.labels.is_empty() && selector.matches(&e.labels))
            })
            && any_or_unset(&self.workload, |w| {
                sides(flow).iter().flatten().any(|e| workload_matches(w, e))
            })
            && any_or_unset(&self.service, |s| {
                sides(flow).iter().flatten().any(|e| service_matches(s, e))
            })
            && any_or_unset(&self.policy, |p| policy_matches(p, flow.policy.as_ref()))
            && any_or_unset(&self.node, |n| flow.node == *n)
            && any_or_unset(&self.interface, |i| {
                flow.interface
                    .as_ref()
                    .is_some_and(|iface| iface.name == *i)
            })
    }

    /// Whether this filter can only match flows that were not forwarded.
    fn only_not_forwarded(&self) -> bool {
        !self.verdict.is_empty() && !self.verdict.contains(&(pb::Verdict::Forwarded as i32))
    }
}

/// Allow list (OR; empty allows everything) minus deny list (OR).
#[derive(Debug, Default)]
pub struct FlowMatcher {
    allow: Vec<Filter>,
    deny: Vec<Filter>,
}

impl FlowMatcher {
    pub fn new(allow: &[pb::FlowFilter], deny: &[pb::FlowFilter]) -> Result<Self, FilterError> {
        Ok(Self {
            allow: allow
                .iter()
                .map(Filter::compile)
                .collect::<Result<_, _>>()?,
            deny: deny.iter().map(Filter::compile).collect::<Result<_, _>>()?,
        })
    }

    /// Matches everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether no filter was given, so every flow matches without looking at it.
    pub fn matches_everything(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn matches(&self, flow: &pb::Flow) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|f| f.matches(flow)))
            && !self.deny.iter().any(|f| f.matches(flow))
    }

    /// True when only flows that were not forwarded can match, so the store may answer from its
    /// index of those instead of scanning everything.
    pub fn only_not_forwarded(&self) -> bool {
        !self.allow.is_empty() && self.allow.iter().all(Filter::only_not_forwarded)
    }
}

#[cfg(test)]
mod tests;
