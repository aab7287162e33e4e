//! Least-privilege policy recommendations from observed allowed flows.
//!
//! Pods are grouped into workloads by their stable labels (per-pod labels such
//! as pod-template-hash are dropped); each workload gets a Kubernetes and a
//! Calico NetworkPolicy allowing exactly the observed peers and ports, with
//! consecutive ports merged into ranges. Output order is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::Serialize;

use crate::endpoint::{Endpoint, Protocol};
use crate::error::RecommendError;
use crate::recommend_yaml::{
    CalicoEntityOut, CalicoPolicyOut, CalicoPortOut, CalicoRuleOut, CalicoSpecOut, IpBlockOut,
    K8sEgressOut, K8sIngressOut, K8sPeerOut, K8sPolicyOut, K8sPortOut, K8sSpecOut,
    LabelSelectorOut, Metadata,
};
use crate::selector::Expr;

/// Labels that differ from pod to pod of one workload, so never select on them.
pub const UNSTABLE_LABELS: [&str; 7] = [
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "pod-template-generation",
    "apps.kubernetes.io/pod-index",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
];

pub fn stable_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| !UNSTABLE_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A flow seen and allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedFlow {
    pub source: Endpoint,
    pub destination: Endpoint,
    pub protocol: Protocol,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecommendScope {
    /// One policy per workload (stable label set) in the namespace.
    Namespace(String),
    /// One policy for the pods of the namespace carrying all these labels.
    Workload {
        namespace: String,
        labels: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone)]
pub struct RecommendOptions {
    pub ingress: bool,
    pub egress: bool,
    /// Calico `order`; left out by default (allow-only rules need no order).
    pub calico_order: Option<f64>,
    /// Calico tier; left out (the default tier) by default.
    pub calico_tier: Option<String>,
    /// Appended to the workload name to form policy names.
    pub name_suffix: String,
}

impl Default for RecommendOptions {
    fn default() -> Self {
        RecommendOptions {
            ingress: true,
            egress: true,
            calico_order: None,
            calico_tier: None,
            name_suffix: "-recommended".into(),
        }
    }
}

/// A proposed policy, in both dialects.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub namespace: String,
    pub name: String,
    /// The selected pods' labels (matchLabels / Calico selector).
    pub selector: BTreeMap<String, String>,
    pub kubernetes_yaml: String,
    pub calico_yaml: String,
    /// What could not be expressed, or was widened.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PeerKey {
    Pod {
        namespace: String,
        labels: BTreeMap<String, String>,
    },
    Net(IpNet),
}

type PortSets = BTreeMap<Protocol, BTreeSet<u16>>;

#[derive(Default)]
struct Observed {
    ingress: BTreeMap<PeerKey, PortSets>,
    egress: BTreeMap<PeerKey, PortSets>,
}

fn peer_key(ep: &Endpoint) -> PeerKey {
    match ep.pod_namespace() {
        Some(ns) => PeerKey::Pod {
            namespace: ns.to_string(),
            labels: stable_labels(&ep.labels),
        },
        None => PeerKey::Net(IpNet::from(ep.ip)),
    }
}

/// Consecutive ports merged: {7070, 42001, 42002} -> [(7070,7070), (42001,42002)].
pub fn port_ranges(ports: &BTreeSet<u16>) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &p in ports {
        match out.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(p) => *hi = p,
            _ => out.push((p, p)),
        }
    }
    out
}

/// Produce recommendations for `scope` from `flows`.
pub fn recommend(
    flows: &[ObservedFlow],
    scope: &RecommendScope,
    options: &RecommendOptions,
) -> Result<Vec<Recommendation>, RecommendError> {
    // workload selector labels -> observed traffic
    let mut groups: BTreeMap<BTreeMap<String, String>, Observed> = BTreeMap::new();
    let namespace = match scope {
        RecommendScope::Namespace(ns) | RecommendScope::Workload { namespace: ns, .. } => ns,
    };
    let group_of = |ep: &Endpoint| -> Option<BTreeMap<String, String>> {
        if ep.pod_namespace() != Some(namespace.as_str()) {
            return None;
        }
        match scope {
            RecommendScope::Namespace(_) => Some(stable_labels(&ep.labels)),
            RecommendScope::Workload { labels, .. } => labels
                .iter()
                .all(|(k, v)| ep.labels.get(k) == Some(v))
                .then(|| labels.clone()),
        }
    };
    for f in flows {
        if let Some(g) = group_of(&f.destination) {
            groups
                .entry(g)
                .or_default()
                .ingress
                .entry(peer_key(&f.source))
                .or_default()
                .entry(f.protocol)
                .or_default()
                .insert(f.port);
        }
        if let Some(g) = group_of(&f.source) {
            groups
                .entry(g)
                .or_default()
                .egress
                .entry(peer_key(&f.destination))
                .or_default()
                .entry(f.protocol)
                .or_default()
                .insert(f.port);
        }
    }
    let mut used_names = BTreeSet::new();
    let mut out = Vec::new();
    for (labels, observed) in groups {
        let mut name = format!("{}{}", workload_name(&labels), options.name_suffix);
        let base = name.clone();
        let mut n = 2;
        while !used_names.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        out.push(build(namespace, &name, &labels, &observed, options)?);
    }
    Ok(out)
}

/// Join recommendations into one multi-document YAML stream.
pub fn to_yaml_stream(recs: &[Recommendation], calico: bool) -> String {
    recs.iter()
        .map(|r| {
            if calico {
                r.calico_yaml.clone()
            } else {
                r.kubernetes_yaml.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn workload_name(labels: &BTreeMap<String, String>) -> String {
    const PREFERRED: [&str; 6] = [
        "app.kubernetes.io/name",
        "app.kubernetes.io/component",
        "app",
        "k8s-app",
        "name",
        "component",
    ];
    let pick = PREFERRED
        .iter()
        .find_map(|k| labels.get(*k))
        .or_else(|| {
            labels
                .iter()
                .find(|(k, _)| k.ends_with("component") || k.ends_with("name"))
                .map(|(_, v)| v)
        })
        .or_else(|| labels.values().next());
    let raw = pick.map(String::as_str).unwrap_or("all-pods");
    let mut s: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s = s.trim_matches(|c| c == '-' || c == '.').to_string();
    s.truncate(200);
    if s.is_empty() {
        "workload".into()
    } else {
        s
    }
}

fn calico_selector(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<Expr> = labels
        .iter()
        .map(|(k, v)| Expr::Eq(k.clone(), v.clone()))
        .collect();
    match parts.len() {
        0 => Expr::All.to_string(),
        1 => parts[0].to_string(),
        _ => Expr::And(parts).to_string(),
    }
}

fn render<T: Serialize>(v: &T) -> Result<String, RecommendError> {
    serde_saphyr::to_string(v).map_err(|e| RecommendError::Render(e.to_string()))
}

struct DirectionRules {
    k8s: Vec<(Vec<K8sPeerOut>, Vec<K8sPortOut>)>,
    calico: Vec<(CalicoEntityOut, String, Vec<CalicoPortOut>)>,
}

fn k8s_peer(namespace: &str, peer: &PeerKey) -> K8sPeerOut {
    match peer {
        PeerKey::Pod {
            namespace: ns,
            labels,
        } => K8sPeerOut {
            namespace_selector: (ns != namespace).then(|| LabelSelectorOut {
                match_labels: BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_string(),
                    ns.clone(),
                )]),
            }),
            pod_selector: Some(LabelSelectorOut {
                match_labels: labels.clone(),
            }),
            ip_block: None,
        },
        PeerKey::Net(net) => K8sPeerOut {
            namespace_selector: None,
            pod_selector: None,
            ip_block: Some(IpBlockOut {
                cidr: net.to_string(),
            }),
        },
    }
}

fn calico_peer(namespace: &str, peer: &PeerKey) -> CalicoEntityOut {
    match peer {
        PeerKey::Pod {
            namespace: ns,
            labels,
        } => CalicoEntityOut {
            selector: Some(calico_selector(labels)),
            namespace_selector: (ns != namespace)
                .then(|| Expr::Eq("projectcalico.org/name".into(), ns.clone()).to_string()),
            ..CalicoEntityOut::default()
        },
        PeerKey::Net(net) => CalicoEntityOut {
            nets: vec![net.to_string()],
            ..CalicoEntityOut::default()
        },
    }
}

fn describe_peer(peer: &PeerKey) -> String {
    match peer {
        PeerKey::Pod { namespace, labels } => {
            format!("pods {{{}}} in {namespace}", calico_selector(labels))
        }
        PeerKey::Net(n) => n.to_string(),
    }
}

fn direction_rules(
    namespace: &str,
    peers: &BTreeMap<PeerKey, PortSets>,
    dir: &str,
    notes: &mut Vec<String>,
) -> DirectionRules {
    // Peers with identical port lists share one Kubernetes rule.
    let mut by_ports: BTreeMap<Vec<(String, u16, u16)>, Vec<&PeerKey>> = BTreeMap::new();
    let mut calico = Vec::new();
    for (peer, sets) in peers {
        if let PeerKey::Pod { labels, .. } = peer {
            if labels.is_empty() {
                notes.push(format!(
                    "{dir} peer {} has no stable labels: the rule selects every pod there",
                    describe_peer(peer)
                ));
            }
        }
        let mut k8s_ports = Vec::new();
        for (proto, ports) in sets {
            let valid: BTreeSet<u16> = ports.iter().copied().filter(|p| *p != 0).collect();
            let ranges = port_ranges(&valid);
            if proto.has_ports() {
                if valid.len() != ports.len() {
                    notes.push(format!(
                        "{dir} {proto} port 0 from {} ignored",
                        describe_peer(peer)
                    ));
                }
                if ranges.is_empty() {
                    continue;
                }
                if matches!(proto, Protocol::Tcp | Protocol::Udp | Protocol::Sctp) {
                    for (lo, hi) in &ranges {
                        k8s_ports.push((proto.to_string(), *lo, *hi));
                    }
                } else {
                    notes.push(format!(
                        "{dir} {proto} with {}: Kubernetes NetworkPolicy cannot express {proto}; Calico only",
                        describe_peer(peer)
                    ));
                }
                let calico_ports = ranges
                    .iter()
                    .map(|(lo, hi)| {
                        if lo == hi {
                            CalicoPortOut::Number(*lo)
                        } else {
                            CalicoPortOut::Range(format!("{lo}:{hi}"))
                        }
                    })
                    .collect();
                calico.push((
                    calico_peer(namespace, peer),
                    proto.to_string(),
                    calico_ports,
                ));
            } else {
                notes.push(format!(
                    "{dir} {proto} with {}: Kubernetes NetworkPolicy cannot express {proto}; Calico only",
                    describe_peer(peer)
                ));
                calico.push((calico_peer(namespace, peer), proto.to_string(), Vec::new()));
            }
        }
        if !k8s_ports.is_empty() {
            by_ports.entry(k8s_ports).or_default().push(peer);
        }
    }
    let k8s = by_ports
        .into_iter()
        .map(|(ports, peers)| {
            (
                peers.into_iter().map(|p| k8s_peer(namespace, p)).collect(),
                ports
                    .into_iter()
                    .map(|(protocol, lo, hi)| K8sPortOut {
                        protocol,
                        port: lo,
                        end_port: (hi != lo).then_some(hi),
                    })
                    .collect(),
            )
        })
        .collect();
    DirectionRules { k8s, calico }
}

fn build(
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    observed: &Observed,
    options: &RecommendOptions,
) -> Result<Recommendation, RecommendError> {
    let mut notes = Vec::new();
    let empty = BTreeMap::new();
    let ingress = direction_rules(
        namespace,
        if options.ingress {
            &observed.ingress
        } else {
            &empty
        },
        "ingress",
        &mut notes,
    );
    let egress = direction_rules(
        namespace,
        if options.egress {
            &observed.egress
        } else {
            &empty
        },
        "egress",
        &mut notes,
    );
    let mut types = Vec::new();
    if options.ingress {
        types.push("Ingress");
    }
    if options.egress {
        types.push("Egress");
    }
    let k8s = K8sPolicyOut {
        api_version: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        metadata: Metadata {
            name: name.to_string(),
            namespace: namespace.to_string(),
        },
        spec: K8sSpecOut {
            pod_selector: LabelSelectorOut {
                match_labels: labels.clone(),
            },
            policy_types: types.clone(),
            ingress: ingress
                .k8s
                .into_iter()
                .map(|(from, ports)| K8sIngressOut { from, ports })
                .collect(),
            egress: egress
                .k8s
                .into_iter()
                .map(|(to, ports)| K8sEgressOut { to, ports })
                .collect(),
        },
    };
    let calico = CalicoPolicyOut {
        api_version: "projectcalico.org/v3",
        kind: "NetworkPolicy",
        metadata: Metadata {
            name: name.to_string(),
            namespace: namespace.to_string(),
        },
        spec: CalicoSpecOut {
            tier: options.calico_tier.clone(),
            order: options.calico_order,
            selector: calico_selector(labels),
            types,
            ingress: ingress
                .calico
                .into_iter()
                .map(|(peer, protocol, ports)| CalicoRuleOut {
                    action: "Allow",
                    protocol,
                    source: Some(peer),
                    destination: (!ports.is_empty()).then(|| CalicoEntityOut {
                        ports,
                        ..CalicoEntityOut::default()
                    }),
                })
                .collect(),
            egress: egress
                .calico
                .into_iter()
                .map(|(mut peer, protocol, ports)| {
                    peer.ports = ports;
                    CalicoRuleOut {
                        action: "Allow",
                        protocol,
                        source: None,
                        destination: Some(peer),
                    }
                })
                .collect(),
        },
    };
    Ok(Recommendation {
        namespace: namespace.to_string(),
        name: name.to_string(),
        selector: labels.clone(),
        kubernetes_yaml: render(&k8s)?,
        calico_yaml: render(&calico)?,
        notes,
    })
}
