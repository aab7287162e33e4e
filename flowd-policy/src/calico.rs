//! Calico policy semantics (projectcalico.org/v3 NetworkPolicy,
//! GlobalNetworkPolicy and their staged forms).
//!
//! Entity-rule scoping follows libcalico-go's `getEndpointSelector`: in a
//! namespaced policy any selector field (selector, notSelector,
//! namespaceSelector, serviceAccounts) limits the match to endpoints of the
//! policy's namespace unless a namespaceSelector widens it.

use std::fmt;

use ipnet::IpNet;

use crate::endpoint::{Endpoint, FlowRef, Icmp, NetworkSet, Protocol};
use crate::labels::{CalicoPodLabels, NamespaceLabels, ServiceAccountLabels};
use crate::rule::{join, Detail, Direction, RuleAction};
use crate::selector::{LabelView, Selector};

#[derive(Debug, Clone)]
pub struct CalicoSpec {
    pub selector: Selector,
    /// GlobalNetworkPolicy only: limits the selected endpoints to these namespaces.
    pub namespace_selector: Option<Selector>,
    pub service_account_selector: Option<Selector>,
    pub ingress: Vec<CalicoRule>,
    pub egress: Vec<CalicoRule>,
}

#[derive(Debug, Clone)]
pub struct CalicoRule {
    pub action: RuleAction,
    pub protocol: Option<Protocol>,
    pub not_protocol: Option<Protocol>,
    pub ip_version: Option<u8>,
    /// `icmp`: the flow's ICMP message must be this one.
    pub icmp: Option<IcmpMatch>,
    /// `notICMP`: the flow's ICMP message must not be this one.
    pub not_icmp: Option<IcmpMatch>,
    /// Application-layer (HTTP) criteria: not visible in flows, treated as met.
    pub http: bool,
    pub source: EntityRule,
    pub destination: EntityRule,
}

#[derive(Debug, Clone, Default)]
pub struct EntityRule {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    /// `None`: no endpoint constraint (any address, pod or not).
    pub scope: Option<EndpointScope>,
    pub not_selector: Option<Selector>,
    pub ports: Vec<PortMatch>,
    pub not_ports: Vec<PortMatch>,
    /// A Kubernetes Service match ("ns/name"): the service's endpoints (and, as a destination,
    /// the ports it reaches them on), or its cluster IP and ports.
    pub service: Option<String>,
}

/// The positive endpoint match of an entity rule: the endpoint must be a pod in
/// the given namespaces, run as a matching service account and match the selector.
#[derive(Debug, Clone)]
pub struct EndpointScope {
    pub namespaces: NamespaceScope,
    pub service_accounts: Option<ServiceAccountMatch>,
    pub selector: Option<Selector>,
}

#[derive(Debug, Clone)]
pub enum NamespaceScope {
    Same(String),
    Selected(Selector),
    Any,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceAccountMatch {
    pub names: Vec<String>,
    pub selector: Option<Selector>,
}

/// An ICMP type, and optionally a code of that type (Calico: a code needs a type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpMatch {
    pub kind: u8,
    pub code: Option<u8>,
}

impl IcmpMatch {
    fn hit(&self, icmp: Icmp) -> bool {
        self.kind == icmp.kind && self.code.is_none_or(|code| code == icmp.code)
    }
}

impl fmt::Display for IcmpMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "type {} code {code}", self.kind),
            None => write!(f, "type {}", self.kind),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    Range(u16, u16),
    Named(String),
}

impl CalicoSpec {
    pub fn rules(&self, dir: Direction) -> &[CalicoRule] {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// Whether the policy (namespaced when `namespace` is set) selects `ep`.
    pub fn selects(&self, namespace: Option<&str>, ep: &Endpoint, d: Detail) -> Result<(), String> {
        let Some(ep_ns) = ep.pod_namespace() else {
            return Err(d.why(|| "endpoint is not a pod".into()));
        };
        if let Some(ns) = namespace {
            if ns != ep_ns {
                return Err(d.why(|| format!("endpoint is in namespace {ep_ns}")));
            }
        }
        if let Some(nss) = &self.namespace_selector {
            if !nss.matches(&NamespaceLabels::of(ep_ns, ep)) {
                return Err(d.why(|| {
                    format!("namespaceSelector \"{nss}\" does not match namespace {ep_ns}")
                }));
            }
        }
        if !self.selector.matches(&CalicoPodLabels { endpoint: ep }) {
            return Err(d.why(|| {
                format!(
                    "selector \"{}\" does not match the pod's labels",
                    self.selector
                )
            }));
        }
        if let Some(sas) = &self.service_account_selector {
            let view = ServiceAccountLabels { endpoint: ep };
            if ep.service_account.is_none() || !sas.matches(&view) {
                return Err(d.why(|| {
                    format!(
                        "serviceAccountSelector \"{sas}\" does not match service account {}",
                        ep.service_account.as_deref().unwrap_or("(none)")
                    )
                }));
            }
        }
        Ok(())
    }
}

impl CalicoRule {
    pub fn matches(&self, flow: &FlowRef<'_>, d: Detail) -> Result<(), String> {
        if let Some(p) = self.protocol {
            if p != flow.protocol {
                return Err(d.why(|| format!("protocol {} is not {p}", flow.protocol)));
            }
        }
        if let Some(p) = self.not_protocol {
            if p == flow.protocol {
                return Err(d.why(|| format!("protocol is {p} (notProtocol)")));
            }
        }
        if let Some(v) = self.ip_version {
            let actual = if flow.source.ip.is_ipv4() { 4 } else { 6 };
            if v != actual {
                return Err(d.why(|| format!("IP version {actual} is not {v}")));
            }
        }
        if let Some(want) = &self.icmp {
            match flow.icmp {
                Some(icmp) if want.hit(icmp) => {}
                Some(icmp) => {
                    return Err(d.why(|| {
                        format!(
                            "ICMP type {} code {} is not icmp {want}",
                            icmp.kind, icmp.code
                        )
                    }))
                }
                None => return Err(d.why(|| format!("no ICMP type known for icmp {want}"))),
            }
        }
        // An unknown message is assumed not to be the excluded one, as an unknown source port is
        // assumed outside notPorts.
        if let (Some(unwanted), Some(icmp)) = (&self.not_icmp, flow.icmp) {
            if unwanted.hit(icmp) {
                return Err(d.why(|| format!("ICMP message is notICMP {unwanted}")));
            }
        }
        self.source.matches(flow.source, Side::Source, flow, d)?;
        self.destination
            .matches(flow.destination, Side::Destination, flow, d)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

impl EntityRule {
    fn matches(
        &self,
        ep: &Endpoint,
        side: Side,
        flow: &FlowRef<'_>,
        d: Detail,
    ) -> Result<(), String> {
        if !self.nets.is_empty() && !self.nets.iter().any(|n| n.contains(&ep.ip)) {
            return Err(d.why(|| format!("{side} IP is not in nets [{}]", join(&self.nets))));
        }
        if let Some(n) = self.not_nets.iter().find(|n| n.contains(&ep.ip)) {
            return Err(d.why(|| format!("{side} IP is in notNets {n}")));
        }
        if let Some(scope) = &self.scope {
            scope
                .matches(ep, flow.network_sets, d)
                .map_err(|why| d.why(|| format!("{side} {why}")))?;
        }
        if let Some(ns) = &self.not_selector {
            if ep.is_pod() && ns.matches(&CalicoPodLabels { endpoint: ep }) {
                return Err(d.why(|| format!("{side} matches notSelector \"{ns}\"")));
            }
            let visible = self
                .scope
                .as_ref()
                .map_or(&NamespaceScope::Any, |s| &s.namespaces);
            if let Some(set) = sets_holding(flow.network_sets, ep)
                .find(|s| visible.sees(s) && ns.matches(&s.labels))
            {
                return Err(d.why(|| {
                    format!(
                        "{side} is in network set {} matching notSelector \"{ns}\"",
                        set.qualified_name()
                    )
                }));
            }
        }
        if let Some(service) = &self.service {
            let Some(membership) = ep.services.iter().find(|m| &m.service == service) else {
                return Err(d.why(|| format!("{side} is not an endpoint of service {service}")));
            };
            // As a destination the service's ports count too (unknown ports: any).
            let on_port = |(protocol, port): &(Protocol, u16)| {
                *protocol == flow.protocol && *port == flow.port
            };
            if side == Side::Destination
                && !membership.ports.is_empty()
                && !membership.ports.iter().any(on_port)
            {
                return Err(d.why(|| {
                    format!(
                        "destination port {}/{} is not a port of service {service}",
                        flow.protocol, flow.port
                    )
                }));
            }
        }
        if self.ports.is_empty() && self.not_ports.is_empty() {
            return Ok(());
        }
        if !flow.protocol.has_ports() {
            return Err(d.why(|| format!("{side} ports cannot match protocol {}", flow.protocol)));
        }
        let port = match side {
            Side::Destination => flow.port,
            Side::Source => match flow.source_port {
                Some(port) => port,
                // An unknown source port can satisfy no positive match, and is assumed outside
                // notPorts.
                None if self.ports.is_empty() => return Ok(()),
                None => {
                    return Err(
                        d.why(|| "source ports cannot be checked (source port unknown)".into())
                    )
                }
            },
        };
        let hit = |pm: &PortMatch| match pm {
            PortMatch::Range(a, b) => (*a..=*b).contains(&port),
            PortMatch::Named(name) => {
                ep.is_pod() && ep.named_port(name, flow.protocol) == Some(port)
            }
        };
        if !self.ports.is_empty() && !self.ports.iter().any(hit) {
            return Err(
                d.why(|| format!("{side} port {port} is not in ports [{}]", join(&self.ports)))
            );
        }
        if let Some(pm) = self.not_ports.iter().find(|pm| hit(pm)) {
            return Err(d.why(|| format!("{side} port {port} is in notPorts {pm}")));
        }
        Ok(())
    }
}

/// The network sets whose CIDRs hold the endpoint's address.
fn sets_holding<'a>(
    sets: &'a [NetworkSet],
    ep: &'a Endpoint,
) -> impl Iterator<Item = &'a NetworkSet> + 'a {
    sets.iter()
        .filter(move |s| s.nets.iter().any(|n| n.contains(&ep.ip)))
}

/// A non-namespaced resource as a namespace selector sees it: only `global()` matches it.
struct GlobalResource;

impl LabelView for GlobalResource {
    fn label(&self, _key: &str) -> Option<&str> {
        None
    }
    fn is_global(&self) -> bool {
        true
    }
}

static NO_LABELS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

impl NamespaceScope {
    /// Whether a rule with this scope reaches `set`: a namespaced policy's own namespace, the
    /// namespaces its namespaceSelector selects (`global()` for GlobalNetworkSets), or every
    /// set for a GlobalNetworkPolicy without one. A set's namespace is seen by its name only.
    fn sees(&self, set: &NetworkSet) -> bool {
        match (self, &set.namespace) {
            (NamespaceScope::Any, _) => true,
            (NamespaceScope::Same(ns), Some(set_ns)) => ns == set_ns,
            (NamespaceScope::Same(_), None) => false,
            (NamespaceScope::Selected(sel), Some(set_ns)) => sel.matches(&NamespaceLabels {
                name: set_ns,
                labels: &NO_LABELS,
            }),
            (NamespaceScope::Selected(sel), None) => sel.matches(&GlobalResource),
        }
    }
}

impl EndpointScope {
    /// A pod in scope, or an address in a network set in scope that the selector matches
    /// (Calico's selector IP sets hold both).
    fn matches(&self, ep: &Endpoint, sets: &[NetworkSet], d: Detail) -> Result<(), String> {
        let as_pod = self.matches_pod(ep, d);
        if as_pod.is_err() && self.service_accounts.is_none() {
            let selected = |s: &&NetworkSet| {
                self.namespaces.sees(s)
                    && self
                        .selector
                        .as_ref()
                        .is_none_or(|sel| sel.matches(&s.labels))
            };
            if sets_holding(sets, ep).any(|s| selected(&s)) {
                return Ok(());
            }
        }
        as_pod
    }

    fn matches_pod(&self, ep: &Endpoint, d: Detail) -> Result<(), String> {
        let Some(ep_ns) = ep.pod_namespace() else {
            return Err(d.why(|| "is not a pod (selectors match pods only)".into()));
        };
        match &self.namespaces {
            NamespaceScope::Any => {}
            NamespaceScope::Same(ns) => {
                if ns != ep_ns {
                    return Err(d.why(|| format!("is not in namespace {ns}")));
                }
            }
            NamespaceScope::Selected(sel) => {
                if !sel.matches(&NamespaceLabels::of(ep_ns, ep)) {
                    return Err(d.why(|| format!("namespace {ep_ns} does not match \"{sel}\"")));
                }
            }
        }
        if let Some(sa) = &self.service_accounts {
            let name = ep.service_account.as_deref();
            if !sa.names.is_empty() && !name.is_some_and(|n| sa.names.iter().any(|x| x == n)) {
                return Err(d.why(|| {
                    format!(
                        "service account {} is not in [{}]",
                        name.unwrap_or("(none)"),
                        sa.names.join(", ")
                    )
                }));
            }
            if let Some(sel) = &sa.selector {
                if name.is_none() || !sel.matches(&ServiceAccountLabels { endpoint: ep }) {
                    return Err(d.why(|| format!("service account does not match \"{sel}\"")));
                }
            }
        }
        if let Some(sel) = &self.selector {
            if !sel.matches(&CalicoPodLabels { endpoint: ep }) {
                return Err(d.why(|| format!("does not match selector \"{sel}\"")));
            }
        }
        Ok(())
    }
}

impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortMatch::Range(a, b) if a == b => write!(f, "{a}"),
            PortMatch::Range(a, b) => write!(f, "{a}:{b}"),
            PortMatch::Named(n) => write!(f, "{n}"),
        }
    }
}
