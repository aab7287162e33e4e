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
    count_parts(
        decisions,
        side as i32,
        decision.policy.as_ref(),
        &decision.action,
        decision.allowed,
        connections,
    );
}

/// As `count`, from a decision's parts: nothing is copied unless the decision is new here.
pub(super) fn count_parts(
    decisions: &mut Vec<pb::EdgePolicy>,
    side: i32,
    policy: Option<&pb::PolicyRef>,
    action: &str,
    allowed: bool,
    connections: u64,
) {
    let same = |e: &&mut pb::EdgePolicy| {
        e.side == side && e.allowed == allowed && e.action == action && e.policy.as_ref() == policy
    };
    match decisions.iter_mut().find(same) {
        Some(entry) => entry.connections += connections,
        None => decisions.push(pb::EdgePolicy {
            side,
            policy: policy.cloned(),
            action: action.to_owned(),
            allowed,
            connections,
        }),
    }
}

/// One order of an edge's decisions: side, then policy, action and whether allowed.
pub(super) fn order(a: &pb::EdgePolicy, b: &pb::EdgePolicy) -> std::cmp::Ordering {
    let (pa, pb) = (a.policy.as_ref().map(rule), b.policy.as_ref().map(rule));
    (a.side, pa, a.action.as_str(), a.allowed).cmp(&(b.side, pb, b.action.as_str(), b.allowed))
}

/// A policy reference down to its rule, borrowed: what tells two decisions apart.
pub(super) fn rule(p: &pb::PolicyRef) -> (&str, &str, &str, &str, i32) {
    (&p.kind, &p.tier, &p.namespace, &p.name, p.rule_index)
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
                rule_name: String::new(),
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
                rule_name: String::new(),
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
