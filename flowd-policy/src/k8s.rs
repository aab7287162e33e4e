//! Kubernetes NetworkPolicy semantics (networking.k8s.io/v1).
//!
//! A policy isolates the pods its podSelector selects, in the directions of its
//! policyTypes; its rules are a union of allows. Peers in one rule are OR-ed,
//! and podSelector with namespaceSelector inside ONE peer are AND-ed.

use std::fmt;

use ipnet::IpNet;

use crate::endpoint::{Endpoint, FlowRef, Protocol};
use crate::labels::NamespaceLabels;
use crate::rule::{join, Detail, Direction};
use crate::selector::Selector;

#[derive(Debug, Clone)]
pub struct K8sSpec {
    pub pod_selector: Selector,
    pub ingress: Vec<K8sRule>,
    pub egress: Vec<K8sRule>,
}

/// One element of spec.ingress / spec.egress. Empty `peers` matches every peer,
/// empty `ports` every port and protocol.
#[derive(Debug, Clone, Default)]
pub struct K8sRule {
    pub peers: Vec<K8sPeer>,
    pub ports: Vec<K8sPort>,
}

#[derive(Debug, Clone)]
pub enum K8sPeer {
    /// `pods: None` with `namespaces: Some` is namespaceSelector alone (all pods
    /// of the selected namespaces); `namespaces: None` limits to the policy's namespace.
    Pods {
        pods: Option<Selector>,
        namespaces: Option<Selector>,
    },
    IpBlock {
        cidr: IpNet,
        except: Vec<IpNet>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone)]
pub struct K8sPort {
    pub protocol: Protocol,
    /// `None`: every port of the protocol.
    pub port: Option<PortRef>,
    pub end_port: Option<u16>,
}

impl K8sSpec {
    pub fn rules(&self, dir: Direction) -> &[K8sRule] {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// Whether a policy in `namespace` selects `ep`; `Err` says why not.
    pub fn selects(&self, namespace: &str, ep: &Endpoint, d: Detail) -> Result<(), String> {
        match ep.pod_namespace() {
            None => return Err(d.why(|| "endpoint is not a pod".into())),
            Some(ns) if ns != namespace => {
                return Err(d.why(|| format!("endpoint is in namespace {ns}")));
            }
            Some(_) => {}
        }
        if self.pod_selector.matches(&ep.labels) {
            Ok(())
        } else {
            Err(d.why(|| {
                format!(
                    "podSelector {{{}}} does not match the pod's labels",
                    self.pod_selector
                )
            }))
        }
    }
}

impl K8sRule {
    /// Match a flow against this rule of a policy in `namespace`.
    pub fn matches(
        &self,
        dir: Direction,
        namespace: &str,
        flow: &FlowRef<'_>,
        d: Detail,
    ) -> Result<(), String> {
        if !self.ports.is_empty() && !self.ports.iter().any(|p| p.matches(flow)) {
            return Err(d.why(|| {
                format!(
                    "{}/{} is not in ports [{}]",
                    flow.protocol,
                    flow.port,
                    join(&self.ports)
                )
            }));
        }
        if self.peers.is_empty() {
            return Ok(());
        }
        let (peer, side) = match dir {
            Direction::Ingress => (&flow.source, "source"),
            Direction::Egress => (&flow.destination, "destination"),
        };
        if self.peers.iter().any(|p| p.matches(namespace, peer)) {
            Ok(())
        } else {
            Err(d.why(|| format!("{side} matches none of [{}]", join(&self.peers))))
        }
    }
}

impl K8sPeer {
    pub fn matches(&self, policy_ns: &str, peer: &Endpoint) -> bool {
        match self {
            K8sPeer::Pods { pods, namespaces } => {
                let Some(peer_ns) = peer.pod_namespace() else {
                    return false;
                };
                let ns_ok = match namespaces {
                    None => peer_ns == policy_ns,
                    Some(sel) => sel.matches(&NamespaceLabels::of(peer_ns, peer)),
                };
                ns_ok && pods.as_ref().is_none_or(|s| s.matches(&peer.labels))
            }
            // Pod IPs match too: Calico and most CNIs apply ipBlock to any source/destination.
            K8sPeer::IpBlock { cidr, except } => {
                cidr.contains(&peer.ip) && !except.iter().any(|e| e.contains(&peer.ip))
            }
        }
    }
}

impl K8sPort {
    pub fn matches(&self, flow: &FlowRef<'_>) -> bool {
        if flow.protocol != self.protocol {
            return false;
        }
        match &self.port {
            None => true,
            Some(PortRef::Number(p)) => match self.end_port {
                Some(end) => (*p..=end).contains(&flow.port),
                None => flow.port == *p,
            },
            // Named ports resolve on the destination pod, for both directions.
            Some(PortRef::Name(name)) => {
                flow.destination.is_pod()
                    && flow.destination.named_port(name, self.protocol) == Some(flow.port)
            }
        }
    }
}

impl fmt::Display for K8sPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            K8sPeer::Pods { pods, namespaces } => {
                let mut parts = Vec::new();
                if let Some(n) = namespaces {
                    parts.push(format!("namespaceSelector {{{n}}}"));
                }
                if let Some(p) = pods {
                    parts.push(format!("podSelector {{{p}}}"));
                }
                write!(f, "{}", parts.join(" + "))
            }
            K8sPeer::IpBlock { cidr, except } => {
                write!(f, "ipBlock {cidr}")?;
                if !except.is_empty() {
                    write!(f, " except {}", join(except))?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for K8sPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.port, self.end_port) {
            (None, _) => write!(f, "{}/any", self.protocol),
            (Some(PortRef::Number(p)), Some(e)) => write!(f, "{}/{p}-{e}", self.protocol),
            (Some(PortRef::Number(p)), None) => write!(f, "{}/{p}", self.protocol),
            (Some(PortRef::Name(n)), _) => write!(f, "{}/{n}", self.protocol),
        }
    }
}
