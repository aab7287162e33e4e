//! Folding records into nodes and edges, one pass, borrowing from each record: a record that
//! joins known nodes and an existing edge allocates nothing.

use std::{collections::HashMap, hash::BuildHasher as _};

use hashbrown::HashTable;

use super::{identity::Identity, policies, ports::PortSet, top, LoadedPolicy, LISTED_PODS};
use crate::proto::v1 as pb;

pub(super) struct NodeAcc {
    pub node: pb::GraphNode,
    hash: u64,
    /// Distinct pods by their names' hashes (no allocation per pod), up to MAX_COUNTED_PODS.
    pods: hashbrown::HashSet<u64, foldhash::fast::FixedState>,
    /// The first LISTED_PODS names, to show (all of them in a builder for a summary).
    pub names: Vec<String>,
}

/// Beyond this many distinct pods a graph node's pod count stops growing (a lower bound):
/// pods that come and go (jobs) must not grow the graph without bound.
const MAX_COUNTED_PODS: usize = 65_536;

/// Outcome and verdict enum values are small; counters indexed by them.
pub(super) const OUTCOMES: usize = 9;
pub(super) const VERDICTS: usize = 5;

pub(super) struct EdgeAcc {
    pub source: u32,
    pub destination: u32,
    pub protocol: i32,
    pub ports: PortSet,
    pub connections: u64,
    pub flows: u64,
    pub bytes: u64,
    pub packets: u64,
    pub outcomes: [u64; OUTCOMES],
    pub verdicts: [u64; VERDICTS],
    pub drop_reasons: Vec<(String, u64)>,
    pub policies: Vec<pb::EdgePolicy>,
    pub first_ns: u64,
    pub last_ns: u64,
    pub recorded_by: Vec<String>,
}

impl EdgeAcc {
    fn new(source: u32, destination: u32, protocol: i32) -> Self {
        Self {
            source,
            destination,
            protocol,
            ports: PortSet::default(),
            connections: 0,
            flows: 0,
            bytes: 0,
            packets: 0,
            outcomes: [0; OUTCOMES],
            verdicts: [0; VERDICTS],
            drop_reasons: Vec::new(),
            policies: Vec::new(),
            first_ns: u64::MAX,
            last_ns: 0,
            recorded_by: Vec::new(),
        }
    }

    pub fn count_drop_reason(&mut self, reason: &str, connections: u64) {
        match self.drop_reasons.iter_mut().find(|(r, _)| r == reason) {
            Some((_, count)) => *count += connections,
            None => self.drop_reasons.push((reason.to_owned(), connections)),
        }
    }

    pub fn recorded_on(&mut self, node: &str) {
        if !self.recorded_by.iter().any(|n| n == node) {
            self.recorded_by.push(node.to_owned());
        }
    }
}

pub struct GraphBuilder {
    state: foldhash::fast::FixedState,
    pub(super) nodes: Vec<NodeAcc>,
    node_index: HashTable<u32>,
    pub(super) edges: Vec<EdgeAcc>,
    edge_index: HashMap<(u32, u32, i32), u32, foldhash::fast::FixedState>,
    pub(super) flows: u64,
    /// Pod names kept per node: LISTED_PODS to show, or every one for a summary.
    listed_pods: usize,
}

impl Default for GraphBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn ns(ts: &Option<pbjson_types::Timestamp>) -> u64 {
    ts.as_ref().map_or(0, crate::store::time_ns)
}

fn is_icmp(protocol: i32) -> bool {
    protocol == pb::Protocol::Icmp as i32 || protocol == pb::Protocol::Icmpv6 as i32
}

impl GraphBuilder {
    pub fn new() -> Self {
        let state = foldhash::fast::FixedState::with_seed(0x666c_6f77_6467);
        Self {
            edge_index: HashMap::with_hasher(state.clone()),
            state,
            nodes: Vec::new(),
            node_index: HashTable::new(),
            edges: Vec::new(),
            flows: 0,
            listed_pods: LISTED_PODS,
        }
    }

    /// A builder whose nodes keep every pod name, so summaries of periods add up to the
    /// window's exact pod count.
    pub(super) fn keeping_all_pods() -> Self {
        Self {
            listed_pods: MAX_COUNTED_PODS,
            ..Self::new()
        }
    }

    /// Records folded in so far.
    pub fn flows(&self) -> u64 {
        self.flows
    }

    fn node(&mut self, identity: Identity<'_>) -> u32 {
        let index = self.node_of(identity);
        if let Some(pod) = identity.pod() {
            self.add_pod(index, pod);
        }
        index
    }

    /// The index of `identity`'s node, added if new (without its pod).
    pub(super) fn node_of(&mut self, identity: Identity<'_>) -> u32 {
        let hash = identity.hash(&self.state);
        let nodes = &self.nodes;
        let index = match self
            .node_index
            .find(hash, |&i| identity.is(&nodes[i as usize].node))
        {
            Some(&i) => i,
            None => {
                let i = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
                self.nodes.push(NodeAcc {
                    node: identity.node(),
                    hash,
                    pods: hashbrown::HashSet::with_hasher(self.state.clone()),
                    names: Vec::new(),
                });
                let nodes = &self.nodes;
                self.node_index
                    .insert_unique(hash, i, |&j| nodes[j as usize].hash);
                i
            }
        };
        index
    }

    pub(super) fn add_pod(&mut self, node: u32, pod: &str) {
        let pod_hash = self.state.hash_one(pod);
        let acc = &mut self.nodes[node as usize];
        if acc.pods.len() < MAX_COUNTED_PODS
            && acc.pods.insert(pod_hash)
            && acc.names.len() < self.listed_pods
        {
            acc.names.push(pod.to_owned());
        }
    }

    /// The edge from `source` to `destination` over `protocol`, added if new.
    pub(super) fn edge(&mut self, source: u32, destination: u32, protocol: i32) -> &mut EdgeAcc {
        let next = u32::try_from(self.edges.len()).unwrap_or(u32::MAX);
        let index = *self
            .edge_index
            .entry((source, destination, protocol))
            .or_insert(next);
        if index == next {
            self.edges.push(EdgeAcc::new(source, destination, protocol));
        }
        &mut self.edges[index as usize]
    }

    pub fn add(&mut self, flow: &pb::Flow) {
        let (Some(source), Some(destination)) = (&flow.source, &flow.destination) else {
            return;
        };
        self.flows += 1;
        let source_node = self.node(Identity::of(source, &flow.node));
        let destination_node = self.node(Identity::of(destination, &flow.node));
        let edge = self.edge(source_node, destination_node, flow.protocol);
        let connections = flow.connections.max(1);
        if !is_icmp(flow.protocol) {
            edge.ports
                .insert(u16::try_from(destination.port).unwrap_or(u16::MAX));
        }
        edge.connections += connections;
        edge.flows += 1;
        for side in [&flow.request, &flow.reply].into_iter().flatten() {
            edge.bytes += side.bytes;
            edge.packets += side.packets;
        }
        if let Some(count) = usize::try_from(flow.outcome)
            .ok()
            .and_then(|i| edge.outcomes.get_mut(i))
        {
            *count += connections;
        }
        if let Some(count) = usize::try_from(flow.verdict)
            .ok()
            .and_then(|i| edge.verdicts.get_mut(i))
        {
            *count += connections;
        }
        if !flow.drop_reason.is_empty() {
            edge.count_drop_reason(&flow.drop_reason, connections);
        }
        for (side, decision) in [
            (pb::PolicySide::Egress, &flow.egress),
            (pb::PolicySide::Ingress, &flow.ingress),
        ] {
            if let Some(decision) = decision {
                policies::count(&mut edge.policies, side, decision, connections);
            }
        }
        edge.first_ns = edge.first_ns.min(ns(&flow.start_time));
        edge.last_ns = edge.last_ns.max(ns(&flow.end_time));
        edge.recorded_on(&flow.node);
    }

    /// The graph, its `max_edges` most telling edges kept, with the policy board over
    /// `loaded`.
    pub fn finish(self, max_edges: usize, loaded: &[LoadedPolicy]) -> pb::GetGraphResponse {
        let nodes: Vec<pb::GraphNode> = self
            .nodes
            .into_iter()
            .map(|acc| {
                let mut node = acc.node;
                node.pod_count = acc.pods.len() as u64;
                let mut pods = acc.names;
                pods.sort_unstable();
                node.pods = pods;
                node
            })
            .collect();
        let edges: Vec<pb::GraphEdge> = self
            .edges
            .into_iter()
            .map(|acc| {
                let timestamp = crate::flow::wire::timestamp_ns;
                let verdicts: Vec<pb::VerdictCount> = counted(&acc.verdicts)
                    .map(|(verdict, connections)| pb::VerdictCount {
                        verdict,
                        connections,
                    })
                    .collect();
                let mut drop_reasons: Vec<pb::DropReasonCount> = acc
                    .drop_reasons
                    .into_iter()
                    .map(|(reason, connections)| pb::DropReasonCount {
                        reason,
                        connections,
                    })
                    .collect();
                // Ties by name, and decisions and nodes in one order, so a graph is the same
                // however its records were visited (one by one, or through summaries).
                drop_reasons.sort_by(|a, b| {
                    (std::cmp::Reverse(a.connections), &a.reason)
                        .cmp(&(std::cmp::Reverse(b.connections), &b.reason))
                });
                let mut policies = acc.policies;
                policies.sort_by(policies::order);
                let mut recorded_by = acc.recorded_by;
                recorded_by.sort_unstable();
                pb::GraphEdge {
                    source: nodes[acc.source as usize].id.clone(),
                    destination: nodes[acc.destination as usize].id.clone(),
                    protocol: acc.protocol,
                    ports: acc.ports.ranges(),
                    connections: acc.connections,
                    flows: acc.flows,
                    bytes: acc.bytes,
                    packets: acc.packets,
                    outcomes: counted(&acc.outcomes)
                        .map(|(outcome, connections)| pb::OutcomeCount {
                            outcome,
                            connections,
                        })
                        .collect(),
                    verdict: top::colour(&verdicts) as i32,
                    verdicts,
                    drop_reasons,
                    policies,
                    first_seen: (acc.first_ns != u64::MAX).then(|| timestamp(acc.first_ns)),
                    last_seen: Some(timestamp(acc.last_ns)),
                    recorded_by,
                }
            })
            .collect();
        let board = policies::board(&edges, loaded);
        let mut graph = pb::GetGraphResponse {
            nodes,
            edges,
            flows: self.flows,
            edges_total: 0,
            policies: board,
            since: None,
            until: None,
            unavailable: Vec::new(),
        };
        top::keep(&mut graph, max_edges);
        graph
    }
}

/// (enum value, count) of the non-zero counters.
fn counted(counts: &[u64]) -> impl Iterator<Item = (i32, u64)> + '_ {
    counts
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, &n)| (i as i32, n))
}
