//! One relay GetFlows call: a node stream per agent, merged in time order, with node states,
//! gaps and checkpoints in between. Memory: one head record per node and bounded channels.

use std::time::{Duration, SystemTime};

use futures::future::select_all;
use tokio::sync::mpsc;
use tonic::Status;

use super::{
    merge::{Lane, MergeOrder, Merger},
    peer::NodeEvent,
    position::Position,
};
use crate::proto::v1::{self as pb, get_flows_response::Event};

pub type Output = mpsc::Sender<Result<pb::GetFlowsResponse, Status>>;

/// What the merge of one call needs besides the node streams.
pub struct MergePlan {
    pub order: MergeOrder,
    /// Stop after this many records (last N without follow).
    pub limit: Option<u64>,
    /// How often a checkpoint goes out while records flow.
    pub checkpoint_interval: Duration,
    /// The node addresses, index for index with the streams (named in node states).
    pub addresses: Vec<String>,
    /// Where the call started: its cursors are the first checkpoint's.
    pub position: Position,
}

fn send_event(event: Event) -> Result<pb::GetFlowsResponse, Status> {
    Ok(pb::GetFlowsResponse { event: Some(event) })
}

/// Runs the merge until every node stream ended (not following), the limit is reached or the
/// consumer left.
pub async fn merge(plan: MergePlan, mut nodes: Vec<mpsc::Receiver<NodeEvent>>, out: Output) {
    let mut merger = Merger::new(plan.order, nodes.len());
    let mut names: Vec<String> = plan.addresses.clone();
    let mut position = plan.position;
    // A node the consumer never heard from is read, on resume, from when the call began.
    if position.created_ns == 0 {
        position.created_ns = now_ns();
    }
    let mut sent_position: Option<Position> = None;
    let mut emitted = 0u64;
    let mut checkpoints = tokio::time::interval(plan.checkpoint_interval);
    checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while let Some((node, flow)) = merger.pop() {
            position.cursors.insert(names[node].clone(), flow.cursor);
            if out.send(send_event(Event::Flow(flow))).await.is_err() {
                return;
            }
            emitted += 1;
            if plan.limit.is_some_and(|limit| emitted >= limit) {
                checkpoint(&out, &mut position, &mut sent_position).await;
                return;
            }
        }
        if merger.finished() {
            checkpoint(&out, &mut position, &mut sent_position).await;
            return;
        }
        let wanted: Vec<usize> = (0..nodes.len()).filter(|n| merger.wants(*n)).collect();
        if wanted.is_empty() {
            // Every node has a head waiting and none can go: cannot happen while the merge
            // rule holds; end the call rather than spin.
            tracing::error!("relay merge stalled with every node's head waiting");
            return;
        }
        let reads = nodes
            .iter_mut()
            .enumerate()
            .filter(|(n, _)| wanted.contains(n))
            .map(|(n, receiver)| Box::pin(async move { (n, receiver.recv().await) }));
        let (node, event) = tokio::select! {
            ((node, event), _, _) = select_all(reads) => (node, event),
            _ = checkpoints.tick() => {
                checkpoint(&out, &mut position, &mut sent_position).await;
                continue;
            }
            () = out.closed() => return,
        };
        let Some(event) = event else {
            merger.set_lane(node, Lane::Ended);
            continue;
        };
        match event {
            NodeEvent::Identified { node: name, start } => {
                if let Some(start) = start {
                    position.cursors.entry(name.clone()).or_insert(start);
                }
                names[node] = name;
            }
            NodeEvent::Flow(flow) => merger.offer(node, *flow),
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
                let status = pb::NodeStatus {
                    node: names[node].clone(),
                    address: plan.addresses[node].clone(),
                    state: state as i32,
                    lag_records,
                    message,
                    ..Default::default()
                };
                if out
                    .send(send_event(Event::NodeStatus(status)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            NodeEvent::Gap {
                count,
                resume_after,
            } => {
                position
                    .cursors
                    .insert(names[node].clone(), resume_after + count);
                let lost = pb::LostRecords {
                    count,
                    resume_after,
                    next_cursor: resume_after + count + 1,
                    node: names[node].clone(),
                };
                if out
                    .send(send_event(Event::LostRecords(lost)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            NodeEvent::Ended => merger.set_lane(node, Lane::Ended),
        }
    }
}

/// Sends the position when it moved since the last checkpoint.
async fn checkpoint(out: &Output, position: &mut Position, sent: &mut Option<Position>) {
    let moved = sent
        .as_ref()
        .is_none_or(|last| last.cursors != position.cursors);
    if !moved {
        return;
    }
    let token = position.encode();
    if out
        .send(send_event(Event::Checkpoint(pb::Checkpoint {
            resume_token: token,
        })))
        .await
        .is_ok()
    {
        *sent = Some(position.clone());
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
