//! The cluster-scoped policy API of Kubernetes SIG Network: AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy (`policy.networking.k8s.io/v1alpha1`) and ClusterNetworkPolicy
//! (`v1alpha2`, tiers Admin and Baseline), on one model.
//!
//! Where they sit: the Admin tier before every NetworkPolicy, the Baseline tier after them
//! (as Calico places its `adminnetworkpolicy` and `baselineadminnetworkpolicy` tiers); inside a
//! tier, lower `priority` first, then the name (the API leaves equal priorities undefined).
//! A policy selects pods through its subject, never host-network pods, and isolates nothing:
//! a flow no rule matches goes on to the next tier (Pass as the tier's default). Rules are
//! tried in order; peers are OR-ed, ports are OR-ed, and a rule needs a peer and a port.

use std::fmt;

use ipnet::IpNet;

use crate::endpoint::{Endpoint, FlowRef, Protocol};
use crate::labels::NamespaceLabels;
use crate::rule::{join, Detail, Direction, RuleAction};
use crate::selector::Selector;

/// The tier of AdminNetworkPolicies and Admin ClusterNetworkPolicies, with Calico's name and
/// order for it (before the default tier at 1,000,000).
pub const ADMIN_TIER: &str = "adminnetworkpolicy";
pub const ADMIN_TIER_ORDER: f64 = 1_000.0;
/// The tier of BaselineAdminNetworkPolicy and Baseline ClusterNetworkPolicies: after the
/// default tier, where NetworkPolicies are.
pub const BASELINE_TIER: &str = "baselineadminnetworkpolicy";
pub const BASELINE_TIER_ORDER: f64 = 10_000_000.0;

#[derive(Debug, Clone)]
pub struct AdminSpec {
    pub subject: AdminSubject,
    pub ingress: Vec<AdminRule>,
    pub egress: Vec<AdminRule>,
}

/// `subject.namespaces` (every pod of the selected namespaces) or `subject.pods`.
#[derive(Debug, Clone)]
pub enum AdminSubject {
    Namespaces(Selector),
    Pods {
        namespaces: Selector,
        pods: Selector,
    },
}

#[derive(Debug, Clone)]
pub struct AdminRule {
    pub name: Option<String>,
    /// Allow (v1alpha2: Accept), Deny or Pass.
    pub action: RuleAction,
    pub peers: Vec<AdminPeer>,
    /// `None`: every port and protocol.
    pub ports: Option<Vec<AdminPort>>,
}

#[derive(Debug, Clone)]
pub enum AdminPeer {
    Namespaces(Selector),
    Pods {
        namespaces: Selector,
        pods: Selector,
    },
    /// Nodes by their labels: traffic from or to a node's addresses (host-network pods too).
    Nodes(Selector),
    /// CIDRs; pod addresses match them as well as outside ones.
    Networks(Vec<IpNet>),
    /// Flows carry addresses, not the names they were resolved from: never matches.
    DomainNames(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminPort {
    Number {
        protocol: Protocol,
        port: u16,
    },
    Range {
        protocol: Protocol,
        start: u16,
        end: u16,
    },
    /// A container port name, resolved on the destination pod (both directions).
    Named(String),
}

impl AdminSpec {
    pub fn rules(&self, dir: Direction) -> &[AdminRule] {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// Whether any rule names peers by domain, which flows cannot show.
    pub fn has_domain_names(&self) -> bool {
        self.ingress
            .iter()
            .chain(&self.egress)
            .flat_map(|r| &r.peers)
            .any(|p| matches!(p, AdminPeer::DomainNames(_)))
    }

    pub fn selects(&self, ep: &Endpoint, d: Detail) -> Result<(), String> {
        if !ep.is_pod() {
            return Err(d.why(|| "endpoint is not a pod (or runs in the host network)".into()));
        }
        let (namespaces, pods) = match &self.subject {
            AdminSubject::Namespaces(namespaces) => (namespaces, None),
            AdminSubject::Pods { namespaces, pods } => (namespaces, Some(pods)),
        };
        let ns = ep.namespace.as_deref().unwrap_or_default();
        if !namespaces.matches(&NamespaceLabels::of(ns, ep)) {
            return Err(d.why(|| format!("subject namespaces {{{namespaces}}} do not match {ns}")));
        }
        if let Some(pods) = pods {
            if !pods.matches(&ep.labels) {
                return Err(d.why(|| format!("subject pods {{{pods}}} do not match the pod")));
            }
        }
        Ok(())
    }
}

impl AdminRule {
    pub fn matches(&self, dir: Direction, flow: &FlowRef<'_>, d: Detail) -> Result<(), String> {
        if let Some(ports) = &self.ports {
            if !ports.iter().any(|p| p.matches(flow)) {
                return Err(d.why(|| {
                    format!(
                        "{}/{} is not in ports [{}]",
                        flow.protocol,
                        flow.port,
                        join(ports)
                    )
                }));
            }
        }
        let (peer, side) = match dir {
            Direction::Ingress => (flow.source, "source"),
            Direction::Egress => (flow.destination, "destination"),
        };
        if self.peers.iter().any(|p| p.matches(peer)) {
            Ok(())
        } else {
            Err(d.why(|| format!("{side} matches none of [{}]", join(&self.peers))))
        }
    }
}

impl AdminPeer {
    fn matches(&self, peer: &Endpoint) -> bool {
        let pod_in = |namespaces: &Selector| {
            peer.is_pod()
                && namespaces.matches(&NamespaceLabels::of(
                    peer.namespace.as_deref().unwrap_or_default(),
                    peer,
                ))
        };
        match self {
            AdminPeer::Namespaces(namespaces) => pod_in(namespaces),
            AdminPeer::Pods { namespaces, pods } => {
                pod_in(namespaces) && pods.matches(&peer.labels)
            }
            AdminPeer::Nodes(nodes) => {
                peer.host && peer.namespace.is_none() && nodes.matches(&peer.labels)
            }
            AdminPeer::Networks(nets) => nets.iter().any(|n| n.contains(&peer.ip)),
            AdminPeer::DomainNames(_) => false,
        }
    }
}

impl AdminPort {
    fn matches(&self, flow: &FlowRef<'_>) -> bool {
        match self {
            AdminPort::Number { protocol, port } => {
                flow.protocol == *protocol && flow.port == *port
            }
            AdminPort::Range {
                protocol,
                start,
                end,
            } => flow.protocol == *protocol && (*start..=*end).contains(&flow.port),
            AdminPort::Named(name) => {
                flow.protocol.has_ports()
                    && flow.destination.is_pod()
                    && flow.destination.named_port(name, flow.protocol) == Some(flow.port)
            }
        }
    }
}

impl fmt::Display for AdminPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminPeer::Namespaces(s) => write!(f, "namespaces {{{s}}}"),
            AdminPeer::Pods { namespaces, pods } => {
                write!(f, "pods {{{pods}}} in namespaces {{{namespaces}}}")
            }
            AdminPeer::Nodes(s) => write!(f, "nodes {{{s}}}"),
            AdminPeer::Networks(nets) => write!(f, "networks {}", join(nets)),
            AdminPeer::DomainNames(names) => {
                write!(f, "domainNames {} (not evaluated)", names.join(", "))
            }
        }
    }
}

impl fmt::Display for AdminPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminPort::Number { protocol, port } => write!(f, "{protocol}/{port}"),
            AdminPort::Range {
                protocol,
                start,
                end,
            } => write!(f, "{protocol}/{start}-{end}"),
            AdminPort::Named(name) => write!(f, "{name}"),
        }
    }
}
