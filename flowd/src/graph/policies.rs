//! Policy decisions on edges, and the board: every loaded policy with what it allowed and
//! denied in the window.

use std::collections::BTreeMap;

use crate::proto::v1 as pb;

/// A policy the agent evaluates with, as the board lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedPolicy {
    /// Kind, tier, namespace and name (the rule index is not used).
    pub reference: pb::PolicyRef,
    pub text: String,
    pub origin: String,
}

/// Adds one side's decision to an edge's list of decisions (a few entries: linear search).
pub(super) fn count(
    decisions: &mut Vec<pb::EdgePolicy>,
    side: pb::PolicySide,
    decision: &pb::PolicyDecision,
    connections: u64,
) {
    let same = |e: &&mut pb::EdgePolicy| {
        e.side == side as i32
            && e.allowed == decision.allowed
            && e.action == decision.action
            && e.policy == decision.policy
    };
    match decisions.iter_mut().find(same) {
        Some(entry) => entry.connections += connections,
        None => decisions.push(pb::EdgePolicy {
            side: side as i32,
            policy: decision.policy.clone(),
            action: decision.action.clone(),
            allowed: decision.allowed,
            connections,
        }),
    }
}

/// The key a policy is listed under: kind, tier, namespace, name.
pub(super) type PolicyKey = (String, String, String, String);

pub(super) fn key(policy: &pb::PolicyRef) -> PolicyKey {
    (
        policy.kind.clone(),
        policy.tier.clone(),
        policy.namespace.clone(),
        policy.name.clone(),
    )
}

/// Loaded policies first, each with its counts, then those that decided flows in the window but
/// are not loaded now (removed since).
pub(super) fn board(edges: &[pb::GraphEdge], loaded: &[LoadedPolicy]) -> Vec<pb::PolicyUsage> {
    let mut usage: BTreeMap<PolicyKey, pb::PolicyUsage> = loaded
        .iter()
        .map(|p| {
            let reference = pb::PolicyRef {
                rule_index: 0,
                ..p.reference.clone()
            };
            (
                key(&reference),
                pb::PolicyUsage {
                    policy: Some(reference),
                    allowed_connections: 0,
                    denied_connections: 0,
                    text: p.text.clone(),
                    origin: p.origin.clone(),
                },
            )
        })
        .collect();
    for decision in edges.iter().flat_map(|e| &e.policies) {
        let Some(policy) = &decision.policy else {
            continue;
        };
        let entry = usage.entry(key(policy)).or_insert_with(|| pb::PolicyUsage {
            policy: Some(pb::PolicyRef {
                rule_index: 0,
                ..policy.clone()
            }),
            ..Default::default()
        });
        if decision.allowed {
            entry.allowed_connections += decision.connections;
        } else {
            entry.denied_connections += decision.connections;
        }
    }
    usage.into_values().collect()
}
