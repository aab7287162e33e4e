//! The relay's graph: its nodes' graphs added up. Nodes and edges have the same ids on every
//! agent, so merging is a sum per id; the edge limit is applied again to the sum.

use std::collections::HashMap;

use super::{policies, ports, top, LISTED_PODS};
use crate::proto::v1 as pb;

fn add_counts<T: Clone>(
    into: &mut Vec<T>,
    from: Vec<T>,
    same: impl Fn(&T, &T) -> bool,
    add: impl Fn(&mut T, &T),
) {
    for item in from {
        match into.iter_mut().find(|i| same(i, &item)) {
            Some(existing) => add(existing, &item),
            None => into.push(item),
        }
    }
}

fn merge_edge(into: &mut pb::GraphEdge, from: pb::GraphEdge) {
    into.ports = ports::union(into.ports.drain(..).chain(from.ports));
    into.connections += from.connections;
    into.flows += from.flows;
    into.bytes += from.bytes;
    into.packets += from.packets;
    add_counts(
        &mut into.outcomes,
        from.outcomes,
        |a, b| a.outcome == b.outcome,
        |a, b| a.connections += b.connections,
    );
    add_counts(
        &mut into.verdicts,
        from.verdicts,
        |a, b| a.verdict == b.verdict,
        |a, b| a.connections += b.connections,
    );
    add_counts(
        &mut into.drop_reasons,
        from.drop_reasons,
        |a, b| a.reason == b.reason,
        |a, b| a.connections += b.connections,
    );
    add_counts(
        &mut into.policies,
        from.policies,
        |a, b| {
            a.side == b.side
                && a.allowed == b.allowed
                && a.action == b.action
                && a.policy == b.policy
        },
        |a, b| a.connections += b.connections,
    );
    into.verdict = top::colour(&into.verdicts) as i32;
    let earlier =
        |a: &Option<pbjson_types::Timestamp>, b: &Option<pbjson_types::Timestamp>| match (a, b) {
            (Some(a), Some(b)) => (a.seconds, a.nanos) <= (b.seconds, b.nanos),
            (Some(_), None) => true,
            _ => false,
        };
    if !earlier(&into.first_seen, &from.first_seen) {
        into.first_seen = from.first_seen;
    }
    if earlier(&into.last_seen, &from.last_seen) {
        into.last_seen = from.last_seen;
    }
    for node in from.recorded_by {
        if !into.recorded_by.contains(&node) {
            into.recorded_by.push(node);
        }
    }
}

/// One graph from several, keeping `max_edges` edges.
pub fn merge(graphs: Vec<pb::GetGraphResponse>, max_edges: usize) -> pb::GetGraphResponse {
    let mut nodes: HashMap<String, pb::GraphNode> = HashMap::new();
    let mut edges: HashMap<(String, String, i32), pb::GraphEdge> = HashMap::new();
    let mut usage: HashMap<policies::PolicyKey, pb::PolicyUsage> = HashMap::new();
    let mut merged = pb::GetGraphResponse::default();
    // A node's own limit may have hidden edges the sum does not see.
    let most_per_node = graphs.iter().map(|g| g.edges_total).max().unwrap_or(0);
    for graph in graphs {
        merged.flows += graph.flows;
        merged.since = merged.since.or(graph.since);
        merged.until = merged.until.or(graph.until);
        merged.unavailable.extend(graph.unavailable);
        for node in graph.nodes {
            match nodes.get_mut(&node.id) {
                Some(known) => {
                    // Pods are counted per agent; the same pod may be seen by two.
                    known.pod_count = known.pod_count.max(node.pod_count);
                    for pod in node.pods {
                        if !known.pods.contains(&pod) {
                            known.pods.push(pod);
                        }
                    }
                    known.pods.sort_unstable();
                    known.pods.truncate(LISTED_PODS);
                    known.pod_count = known.pod_count.max(known.pods.len() as u64);
                }
                None => {
                    nodes.insert(node.id.clone(), node);
                }
            }
        }
        for edge in graph.edges {
            let key = (edge.source.clone(), edge.destination.clone(), edge.protocol);
            match edges.get_mut(&key) {
                Some(known) => merge_edge(known, edge),
                None => {
                    edges.insert(key, edge);
                }
            }
        }
        for policy in graph.policies {
            let Some(reference) = &policy.policy else {
                continue;
            };
            match usage.get_mut(&policies::key(reference)) {
                Some(known) => {
                    known.allowed_connections += policy.allowed_connections;
                    known.denied_connections += policy.denied_connections;
                    if known.text.is_empty() {
                        known.text = policy.text;
                        known.origin = policy.origin;
                    }
                }
                None => {
                    usage.insert(policies::key(reference), policy);
                }
            }
        }
    }
    merged.nodes = nodes.into_values().collect();
    merged.edges = edges.into_values().collect();
    let mut board: Vec<(policies::PolicyKey, pb::PolicyUsage)> = usage.into_iter().collect();
    board.sort_by(|a, b| a.0.cmp(&b.0));
    merged.policies = board.into_iter().map(|(_, usage)| usage).collect();
    top::keep(&mut merged, max_edges);
    merged.edges_total = merged.edges_total.max(most_per_node);
    merged
}
