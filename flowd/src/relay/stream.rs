//! One relay GetFlows call: a node stream per agent, merged in time order, with node states,
//! gaps and checkpoints in between. Memory: one head record per node and bounded channels.

use std::time::{Duration, SystemTime};

use futures::future::select_all;
use tokio::sync::mpsc;
use tonic::Status;

use super::{
    merge::{Lane, MergeOrder, Merger},
    peer::{NodeEvent, PeerTarget},
    position::Position,
    raw::Encoded,
    PeerSet,
};
use crate::proto::v1::{self as pb, get_flows_response::Event};

/// What goes to the consumer: messages in batches, one channel operation per batch.
pub type Output = mpsc::Sender<Vec<Result<Encoded, Status>>>;

/// Messages handed to the consumer per batch at most.
pub const OUT_BATCH: usize = 64;

/// The consumer's messages, batched until the batch is full or the merge is about to wait.
struct Outbox {
    tx: Output,
    pending: Vec<Result<Encoded, Status>>,
}

impl Outbox {
    /// False when the consumer left.
    async fn push(&mut self, event: Event) -> bool {
        self.push_encoded(Encoded::of(&pb::GetFlowsResponse { event: Some(event) }))
            .await
    }

    /// A node's response as the node encoded it.
    async fn push_encoded(&mut self, encoded: Encoded) -> bool {
        self.pending.push(Ok(encoded));
        self.pending.len() < OUT_BATCH || self.flush().await
    }

    async fn flush(&mut self) -> bool {
        self.pending.is_empty()
            || self
                .tx
                .send(std::mem::take(&mut self.pending))
                .await
                .is_ok()
    }
}

/// What the merge of one call needs besides the node streams.
pub struct MergePlan {
    pub order: MergeOrder,
    /// Stop after this many records (last N without follow).
    pub limit: Option<u64>,
    /// How often a checkpoint goes out while records flow.
    pub checkpoint_interval: Duration,
    /// Following: nodes that join the set are added, nodes that leave it end as GONE, and the
    /// call never ends on its own.
    pub follow: bool,
    /// Where the call started: its cursors are the first checkpoint's.
    pub position: Position,
}

/// One node of the call: where it is, what it is called, its stream (gone: `None`) and the
/// cursor of the last of its records delivered.
struct NodeIo {
    address: String,
    name: String,
    events: Option<mpsc::Receiver<NodeEvent>>,
    cursor: Option<u64>,
}

/// Runs the merge until every node stream ended (not following), the limit is reached or the
/// consumer left. `spawn` starts one node's stream.
pub async fn merge(
    plan: MergePlan,
    mut peers: PeerSet,
    spawn: impl Fn(&PeerTarget) -> mpsc::Receiver<NodeEvent>,
    out: Output,
) {
    let left = out.clone();
    let mut out = Outbox {
        tx: out,
        pending: Vec::with_capacity(OUT_BATCH),
    };
    let initial = peers.current();
    let mut merger = Merger::new(plan.order, initial.len());
    let mut nodes: Vec<NodeIo> = initial
        .iter()
        .map(|target| NodeIo {
            address: target.address.clone(),
            name: target.address.clone(),
            events: Some(spawn(target)),
            cursor: None,
        })
        .collect();
    let mut position = plan.position;
    // A node the consumer never heard from is read, on resume, from when the call began.
    if position.created_ns == 0 {
        position.created_ns = crate::store::system_time_ns(SystemTime::now());
    }
    let mut sent_position: Option<Position> = None;
    let mut emitted = 0u64;
    let mut checkpoints = tokio::time::interval(plan.checkpoint_interval);
    checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while let Some((node, flow)) = merger.pop() {
            position
                .cursors
                .insert(nodes[node].name.clone(), flow.cursor);
            if !out.push_encoded(Encoded(flow.encoded)).await {
                return;
            }
            emitted += 1;
            if plan.limit.is_some_and(|limit| emitted >= limit) {
                checkpoint(&mut out, &nodes, &mut position, &mut sent_position).await;
                out.flush().await;
                return;
            }
        }
        if !plan.follow && merger.finished() {
            checkpoint(&mut out, &nodes, &mut position, &mut sent_position).await;
            out.flush().await;
            return;
        }
        // About to wait: what is ready goes to the consumer first.
        if !out.flush().await {
            return;
        }
        let reads: Vec<_> = nodes
            .iter_mut()
            .enumerate()
            .filter(|(n, _)| merger.wants(*n))
            .filter_map(|(n, io)| io.events.as_mut().map(|events| (n, events)))
            .map(|(n, events)| Box::pin(async move { (n, events.recv().await) }))
            .collect();
        let any_read = async {
            if reads.is_empty() {
                std::future::pending().await
            } else {
                select_all(reads).await.0
            }
        };
        let (node, event) = tokio::select! {
            read = any_read => read,
            _ = checkpoints.tick() => {
                checkpoint(&mut out, &nodes, &mut position, &mut sent_position).await;
                continue;
            }
            changed = peers.changed(), if plan.follow => {
                if changed.is_ok() {
                    let current = peers.current();
                    if !rejoin(&current, &mut nodes, &mut merger, &spawn, &mut out).await {
                        return;
                    }
                }
                continue;
            }
            () = left.closed() => return,
        };
        let Some(event) = event else {
            merger.set_lane(node, Lane::Ended);
            continue;
        };
        let io = &mut nodes[node];
        match event {
            NodeEvent::Identified { node: name, start } => {
                if let Some(start) = start {
                    position.cursors.entry(name.clone()).or_insert(start);
                }
                io.name = name;
            }
            NodeEvent::Flows(flows) => merger.offer(node, flows),
            NodeEvent::Watermark(ns) => merger.watermark(node, ns),
            NodeEvent::State {
                state,
                lag_records,
                message,
            } => {
                merger.set_lane(
                    node,
                    if state == pb::NodeState::Unavailable {
                        Lane::Unavailable
                    } else {
                        Lane::Streaming
                    },
                );
                let status = node_status(io, state, lag_records, message);
                if !out.push(Event::NodeStatus(status)).await {
                    return;
                }
            }
            NodeEvent::Gap {
                count,
                resume_after,
            } => {
                io.cursor = Some(resume_after + count);
                let lost = pb::LostRecords {
                    count,
                    resume_after,
                    next_cursor: resume_after + count + 1,
                    node: io.name.clone(),
                };
                if !out.push(Event::LostRecords(lost)).await {
                    return;
                }
            }
            NodeEvent::Ended => merger.set_lane(node, Lane::Ended),
        }
    }
}

fn node_status(
    io: &NodeIo,
    state: pb::NodeState,
    lag_records: u64,
    message: String,
) -> pb::NodeStatus {
    pb::NodeStatus {
        node: io.name.clone(),
        address: io.address.clone(),
        state: state as i32,
        lag_records,
        message,
        ..Default::default()
    }
}

/// The node set changed: streams for the nodes that joined, GONE for those that left. False
/// when the consumer left.
async fn rejoin(
    current: &[PeerTarget],
    nodes: &mut Vec<NodeIo>,
    merger: &mut Merger,
    spawn: &impl Fn(&PeerTarget) -> mpsc::Receiver<NodeEvent>,
    out: &mut Outbox,
) -> bool {
    for (index, io) in nodes.iter_mut().enumerate() {
        let still = current.iter().any(|t| t.address == io.address);
        if still || io.events.is_none() {
            continue;
        }
        io.events = None;
        merger.set_lane(index, Lane::Ended);
        let status = node_status(
            io,
            pb::NodeState::Gone,
            0,
            "no longer among the agents".into(),
        );
        if !out.push(Event::NodeStatus(status)).await {
            return false;
        }
    }
    for target in current {
        let known = nodes
            .iter()
            .any(|io| io.address == target.address && io.events.is_some());
        if !known {
            merger.add();
            nodes.push(NodeIo {
                address: target.address.clone(),
                name: target.address.clone(),
                events: Some(spawn(target)),
                cursor: None,
            });
        }
    }
    true
}

/// Sends the position when it moved since the last checkpoint.
async fn checkpoint(
    out: &mut Outbox,
    nodes: &[NodeIo],
    position: &mut Position,
    sent: &mut Option<Position>,
) {
    for io in nodes {
        if let Some(cursor) = io.cursor {
            position.cursors.insert(io.name.clone(), cursor);
        }
    }
    let moved = sent
        .as_ref()
        .is_none_or(|last| last.cursors != position.cursors);
    if !moved {
        return;
    }
    let token = position.encode();
    let checkpoint = Event::Checkpoint(pb::Checkpoint {
        resume_token: token,
    });
    if out.push(checkpoint).await {
        *sent = Some(position.clone());
    }
}
