//! The k-way merge of node streams: a record goes out only when no node still streaming can
//! send an earlier one, which each node proves by its next record or by a watermark.

use std::collections::{BTreeMap, VecDeque};

use super::raw::MergedFlow;

/// Which time orders the merge: node streams arrive sorted by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOrder {
    /// When each node stored the record: follow, last N and resumed streams.
    Recorded,
    /// When the flow ended: since/until ranges, which nodes read by end time.
    Ended,
}

impl MergeOrder {
    pub fn time_of(self, flow: &MergedFlow) -> u64 {
        match self {
            Self::Recorded => flow.recorded_ns,
            Self::Ended => flow.end_ns,
        }
    }
}

/// Where a node's stream stands, as far as the merge must know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Connecting, connected or catching up: its next record may be the earliest of all.
    Streaming,
    /// Not answering: the others go on without it.
    Unavailable,
    /// Its stream ended (not following): nothing more comes.
    Ended,
}

struct NodeLane {
    lane: Lane,
    /// The node's next records, in its order.
    head: VecDeque<MergedFlow>,
    /// Nothing later from this node is earlier than this (ns).
    watermark: u64,
}

/// The merge state: one batch of records per node at most, so memory stays bounded by the
/// number of nodes whatever the consumer's speed.
pub struct Merger {
    order: MergeOrder,
    nodes: BTreeMap<usize, NodeLane>,
}

impl Merger {
    pub fn new(order: MergeOrder, nodes: usize) -> Self {
        Self {
            order,
            nodes: (0..nodes)
                .map(|n| {
                    (
                        n,
                        NodeLane {
                            lane: Lane::Streaming,
                            head: VecDeque::new(),
                            watermark: 0,
                        },
                    )
                })
                .collect(),
        }
    }

    /// A node that joined: its lane, streaming, after the existing ones.
    pub fn add(&mut self) -> usize {
        let index = self.nodes.len();
        self.nodes.insert(
            index,
            NodeLane {
                lane: Lane::Streaming,
                head: VecDeque::new(),
                watermark: 0,
            },
        );
        index
    }

    /// Whether `node` needs its next event read (nothing of it waiting).
    pub fn wants(&self, node: usize) -> bool {
        self.nodes
            .get(&node)
            .is_some_and(|n| n.head.is_empty() && n.lane != Lane::Ended)
    }

    /// Takes `node`'s next records (in its order); the caller reads a node only while it
    /// `wants` more.
    pub fn offer(&mut self, node: usize, flows: Vec<MergedFlow>) {
        if let Some(lane) = self.nodes.get_mut(&node) {
            if let Some(last) = flows.last() {
                lane.watermark = lane.watermark.max(self.order.time_of(last));
            }
            lane.head.extend(flows);
        }
    }

    pub fn watermark(&mut self, node: usize, ns: u64) {
        if let Some(lane) = self.nodes.get_mut(&node) {
            lane.watermark = lane.watermark.max(ns);
        }
    }

    pub fn set_lane(&mut self, node: usize, state: Lane) {
        if let Some(lane) = self.nodes.get_mut(&node) {
            lane.lane = state;
        }
    }

    /// The earliest head, if no streaming node without a head could still send an earlier one.
    pub fn pop(&mut self) -> Option<(usize, MergedFlow)> {
        let (node, time) = self
            .nodes
            .iter()
            .filter_map(|(n, lane)| lane.head.front().map(|f| (*n, self.order.time_of(f))))
            .min_by_key(|(n, time)| (*time, *n))?;
        let blocked = self.nodes.iter().any(|(_, lane)| {
            lane.head.is_empty() && lane.lane == Lane::Streaming && lane.watermark < time
        });
        if blocked {
            return None;
        }
        let flow = self.nodes.get_mut(&node)?.head.pop_front()?;
        Some((node, flow))
    }

    /// True when every node ended and nothing is left to emit.
    pub fn finished(&self) -> bool {
        self.nodes
            .values()
            .all(|lane| lane.lane == Lane::Ended && lane.head.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(_node: &str, cursor: u64, recorded_s: i64) -> MergedFlow {
        MergedFlow {
            cursor,
            recorded_ns: recorded_s as u64 * 1_000_000_000,
            end_ns: 0,
            encoded: bytes::Bytes::new(),
        }
    }

    fn drain(merger: &mut Merger) -> Vec<(usize, u64)> {
        std::iter::from_fn(|| merger.pop())
            .map(|(n, f)| (n, f.cursor))
            .collect()
    }

    #[test]
    fn a_quiet_node_holds_the_merge_until_its_watermark_passes() {
        let mut merger = Merger::new(MergeOrder::Recorded, 2);
        merger.offer(0, vec![flow("a", 1, 10)]);
        assert!(
            merger.pop().is_none(),
            "node 1 might still send something earlier"
        );
        merger.watermark(1, 9_000_000_000);
        assert!(
            merger.pop().is_none(),
            "a watermark before the head proves nothing"
        );
        merger.watermark(1, 10_000_000_000);
        assert_eq!(drain(&mut merger), vec![(0, 1)]);
    }

    #[test]
    fn records_come_out_in_time_order_across_nodes() {
        let mut merger = Merger::new(MergeOrder::Recorded, 3);
        let streams = [
            vec![flow("a", 1, 1), flow("a", 2, 5), flow("a", 3, 9)],
            vec![flow("b", 1, 2), flow("b", 2, 3)],
            vec![flow("c", 1, 4)],
        ];
        let mut next = [0usize; 3];
        let mut out = Vec::new();
        loop {
            for node in 0..3 {
                if merger.wants(node) {
                    match streams[node].get(next[node]) {
                        Some(f) => {
                            merger.offer(node, vec![f.clone()]);
                            next[node] += 1;
                        }
                        None => merger.set_lane(node, Lane::Ended),
                    }
                }
            }
            match merger.pop() {
                Some((_, f)) => out.push(merger.order.time_of(&f) / 1_000_000_000),
                None if merger.finished() => break,
                None => {}
            }
        }
        assert_eq!(out, vec![1, 2, 3, 4, 5, 9]);
    }

    #[test]
    fn an_unavailable_node_does_not_stall_the_others() {
        let mut merger = Merger::new(MergeOrder::Recorded, 2);
        merger.offer(0, vec![flow("a", 1, 10)]);
        merger.set_lane(1, Lane::Unavailable);
        assert_eq!(drain(&mut merger), vec![(0, 1)]);
        // Back, behind in time: its records go out as they come (it is catching up).
        merger.set_lane(1, Lane::Streaming);
        merger.offer(1, vec![flow("b", 7, 3)]);
        merger.watermark(0, 3);
        assert_eq!(drain(&mut merger), vec![(1, 7)]);
    }

    #[test]
    fn a_batch_is_interleaved_with_the_other_nodes() {
        let mut merger = Merger::new(MergeOrder::Recorded, 2);
        merger.offer(0, (1..=6).map(|s| flow("a", s as u64, s)).collect());
        assert!(merger.pop().is_none(), "node 1 has said nothing yet");
        merger.offer(1, vec![flow("b", 1, 3)]);
        assert_eq!(
            drain(&mut merger),
            vec![(0, 1), (0, 2), (0, 3), (1, 1)],
            "node 1's record in its place; then it must speak again"
        );
        merger.watermark(1, 10_000_000_000);
        assert_eq!(drain(&mut merger), vec![(0, 4), (0, 5), (0, 6)]);
    }

    #[test]
    fn equal_times_go_by_node() {
        let mut merger = Merger::new(MergeOrder::Recorded, 2);
        merger.offer(1, vec![flow("b", 1, 5)]);
        merger.offer(0, vec![flow("a", 1, 5)]);
        assert_eq!(drain(&mut merger), vec![(0, 1), (1, 1)]);
    }
}
