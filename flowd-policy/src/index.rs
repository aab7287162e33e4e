//! Orders policies the way Felix does and indexes them by namespace.
//!
//! Tiers sort by order (no order = last), then name; the built-in "default"
//! tier has order 1,000,000 unless a Tier object says otherwise. Inside a tier,
//! policies sort by order (none = +infinity), then by Felix's policy name.

use std::cmp::Ordering;
use std::collections::HashMap;

use ipnet::IpNet;

use crate::admin::{AdminPeer, ADMIN_TIER, ADMIN_TIER_ORDER, BASELINE_TIER, BASELINE_TIER_ORDER};
use crate::model::{Policy, PolicyBody, Tier, TierDefaultAction, DEFAULT_TIER, DEFAULT_TIER_ORDER};

pub(crate) struct Compiled {
    /// Sorted evaluation order; indices below point into this.
    pub policies: Vec<Policy>,
    pub tier_of: Vec<usize>,
    pub tiers: Vec<Tier>,
    pub global: Vec<usize>,
    pub by_namespace: HashMap<String, Vec<usize>>,
}

fn cmp_order(a: Option<f64>, b: Option<f64>) -> Ordering {
    let a = a.unwrap_or(f64::INFINITY);
    let b = b.unwrap_or(f64::INFINITY);
    a.total_cmp(&b)
}

impl Compiled {
    pub fn new(policies: Vec<Policy>, tier_objects: &[Tier]) -> Compiled {
        let mut tiers: Vec<Tier> = tier_objects.to_vec();
        // Tier objects of these names (Calico creates them) take precedence.
        let known = |name: &str, tiers: &mut Vec<Tier>| {
            if !tiers.iter().any(|t| t.name == name) {
                let (order, default_action) = match name {
                    DEFAULT_TIER => (Some(DEFAULT_TIER_ORDER), TierDefaultAction::Deny),
                    // Admin policies isolate nothing: what they do not decide goes on.
                    ADMIN_TIER => (Some(ADMIN_TIER_ORDER), TierDefaultAction::Pass),
                    BASELINE_TIER => (Some(BASELINE_TIER_ORDER), TierDefaultAction::Pass),
                    _ => (None, TierDefaultAction::Deny),
                };
                tiers.push(Tier {
                    name: name.to_string(),
                    order,
                    default_action,
                });
            }
        };
        known(DEFAULT_TIER, &mut tiers);
        for p in &policies {
            known(&p.tier, &mut tiers);
        }
        tiers.sort_by(|a, b| match (a.order, b.order) {
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            _ => cmp_order(a.order, b.order).then_with(|| a.name.cmp(&b.name)),
        });
        let rank: HashMap<&str, usize> = tiers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let mut keyed: Vec<(usize, String, Policy)> = policies
            .into_iter()
            .map(|p| {
                (
                    rank.get(p.tier.as_str()).copied().unwrap_or(usize::MAX),
                    p.sort_name(),
                    p,
                )
            })
            .collect();
        keyed.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| cmp_order(a.2.order, b.2.order))
                .then_with(|| a.1.cmp(&b.1))
        });
        let tier_of: Vec<usize> = keyed.iter().map(|k| k.0).collect();
        let policies: Vec<Policy> = keyed.into_iter().map(|k| k.2).collect();

        let mut global = Vec::new();
        let mut by_namespace: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in policies.iter().enumerate() {
            match &p.namespace {
                None => global.push(i),
                Some(ns) => by_namespace.entry(ns.clone()).or_default().push(i),
            }
        }
        // Each namespace's list is its own policies merged with the global
        // ones, still in evaluation order (indices ascend).
        for list in by_namespace.values_mut() {
            list.extend_from_slice(&global);
            list.sort_unstable();
        }
        Compiled {
            policies,
            tier_of,
            tiers,
            global,
            by_namespace,
        }
    }

    /// Policies that can apply to a pod in `namespace`, in evaluation order.
    pub fn candidates(&self, namespace: &str) -> &[usize] {
        self.by_namespace
            .get(namespace)
            .map(Vec::as_slice)
            .unwrap_or(&self.global)
    }

    /// Every CIDR any rule mentions (for the cache's address classes).
    pub fn cidrs(&self) -> Vec<IpNet> {
        let mut out = Vec::new();
        for p in &self.policies {
            match &p.body {
                PolicyBody::Kubernetes(s) => {
                    for r in s.ingress.iter().chain(&s.egress) {
                        for peer in &r.peers {
                            if let crate::k8s::K8sPeer::IpBlock { cidr, except } = peer {
                                out.push(*cidr);
                                out.extend(except.iter().copied());
                            }
                        }
                    }
                }
                PolicyBody::Calico(s) => {
                    for r in s.ingress.iter().chain(&s.egress) {
                        for e in [&r.source, &r.destination] {
                            out.extend(e.nets.iter().copied());
                            out.extend(e.not_nets.iter().copied());
                        }
                    }
                }
                PolicyBody::Admin(s) => {
                    for r in s.ingress.iter().chain(&s.egress) {
                        for peer in &r.peers {
                            if let AdminPeer::Networks(nets) = peer {
                                out.extend(nets.iter().copied());
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Whether any rule matches source ports: only then can a flow's source port change a
    /// decision, and only then is it part of the cache key (it is new on nearly every
    /// connection).
    pub fn reads_source_ports(&self) -> bool {
        self.policies.iter().any(|p| match &p.body {
            PolicyBody::Kubernetes(_) | PolicyBody::Admin(_) => false,
            PolicyBody::Calico(s) => s
                .ingress
                .iter()
                .chain(&s.egress)
                .any(|r| !r.source.ports.is_empty() || !r.source.not_ports.is_empty()),
        })
    }
}
