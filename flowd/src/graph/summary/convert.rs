//! A builder's graph to a summary and back: folding a summary adds exactly what folding its
//! records one by one would have added.

use std::collections::HashMap;

use super::format::{Summary, SummaryDecision, SummaryEdge};
use crate::graph::{
    build::{GraphBuilder, OUTCOMES},
    identity::Identity,
    policies,
};
use crate::proto::v1 as pb;

/// Strings listed once, referred to by index; borrowed from the builder until encoded.
#[derive(Default)]
struct Strings<'a> {
    list: Vec<String>,
    index: HashMap<&'a str, u32>,
}

impl<'a> Strings<'a> {
    fn of(&mut self, s: &'a str) -> u32 {
        let next = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        *self.index.entry(s).or_insert_with(|| {
            self.list.push(s.to_owned());
            next
        })
    }
}

pub(crate) fn summarise(builder: &GraphBuilder) -> Summary {
    let mut strings = Strings::default();
    let mut policies: Vec<pb::PolicyRef> = Vec::new();
    let mut policy_index: HashMap<(&str, &str, &str, &str, i32), u32> = HashMap::new();
    let nodes = builder
        .nodes
        .iter()
        .map(|acc| {
            let mut node = acc.node.clone();
            node.pods = acc.names.clone();
            node.pod_count = node.pods.len() as u64;
            node
        })
        .collect();
    let edges = builder
        .edges
        .iter()
        .map(|edge| SummaryEdge {
            source: edge.source,
            destination: edge.destination,
            protocol: edge.protocol,
            ports: edge
                .ports
                .ranges()
                .iter()
                .flat_map(|r| [r.first, r.last])
                .collect(),
            connections: edge.connections,
            flows: edge.flows,
            bytes: edge.bytes,
            packets: edge.packets,
            counts: edge
                .outcomes
                .iter()
                .chain(&edge.verdicts)
                .copied()
                .collect(),
            drop_reasons: edge
                .drop_reasons
                .iter()
                .flat_map(|(reason, n)| [u64::from(strings.of(reason)), *n])
                .collect(),
            decisions: edge
                .policies
                .iter()
                .map(|d| SummaryDecision {
                    side: d.side,
                    policy: d.policy.as_ref().map_or(0, |p| {
                        let next = u32::try_from(policies.len()).unwrap_or(u32::MAX);
                        let i = *policy_index.entry(policies::rule(p)).or_insert_with(|| {
                            policies.push(p.clone());
                            next
                        });
                        i + 1
                    }),
                    action: strings.of(&d.action),
                    allowed: d.allowed,
                    connections: d.connections,
                })
                .collect(),
            first_ns: edge.first_ns,
            last_ns: edge.last_ns,
            recorded_by: edge.recorded_by.iter().map(|n| strings.of(n)).collect(),
        })
        .collect();
    Summary {
        nodes,
        strings: strings.list,
        policies,
        edges,
        flows: builder.flows,
    }
}

/// Adds a summary's counts to `builder`. Indices out of range (a damaged summary) are skipped.
pub(crate) fn fold(builder: &mut GraphBuilder, summary: &Summary) {
    let nodes: Vec<u32> = summary
        .nodes
        .iter()
        .map(|node| {
            let index = builder.node_of(Identity::of_node(node));
            for pod in &node.pods {
                builder.add_pod(index, pod);
            }
            index
        })
        .collect();
    builder.flows += summary.flows;
    let string = |i: u64| usize::try_from(i).ok().and_then(|i| summary.strings.get(i));
    for part in &summary.edges {
        let (Some(&source), Some(&destination)) = (
            nodes.get(part.source as usize),
            nodes.get(part.destination as usize),
        ) else {
            continue;
        };
        let edge = builder.edge(source, destination, part.protocol);
        for range in part.ports.chunks_exact(2) {
            for port in range[0]..=range[1].min(u32::from(u16::MAX)) {
                edge.ports.insert(port as u16);
            }
        }
        edge.connections += part.connections;
        edge.flows += part.flows;
        edge.bytes += part.bytes;
        edge.packets += part.packets;
        for (i, n) in part.counts.iter().enumerate() {
            if i < OUTCOMES {
                edge.outcomes[i] += n;
            } else if let Some(count) = edge.verdicts.get_mut(i - OUTCOMES) {
                *count += n;
            }
        }
        for pair in part.drop_reasons.chunks_exact(2) {
            if let Some(reason) = string(pair[0]) {
                edge.count_drop_reason(reason, pair[1]);
            }
        }
        for decision in &part.decisions {
            let policy = match decision.policy {
                0 => None,
                i => match summary.policies.get(i as usize - 1) {
                    Some(p) => Some(p),
                    None => continue,
                },
            };
            let Some(action) = string(u64::from(decision.action)) else {
                continue;
            };
            policies::count_parts(
                &mut edge.policies,
                decision.side,
                policy,
                action,
                decision.allowed,
                decision.connections,
            );
        }
        edge.first_ns = edge.first_ns.min(part.first_ns);
        edge.last_ns = edge.last_ns.max(part.last_ns);
        for &node in &part.recorded_by {
            if let Some(name) = string(u64::from(node)) {
                edge.recorded_on(name);
            }
        }
    }
}

/// The summary of a coarser period from its parts' encoded summaries; none if one cannot be
/// decoded (that period is then read from its parts).
pub(crate) fn combine(parts: &[Vec<u8>]) -> Option<Vec<u8>> {
    use prost::Message as _;
    let mut builder = GraphBuilder::keeping_all_pods();
    for part in parts {
        match Summary::decode(part.as_slice()) {
            Ok(summary) => fold(&mut builder, &summary),
            Err(err) => {
                tracing::warn!(error = %err, "a graph summary cannot be decoded; not combined");
                return None;
            }
        }
    }
    Some(summarise(&builder).encode_to_vec())
}
