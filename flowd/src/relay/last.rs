//! `last N` over the cluster: N in total, not N per node. Each node sends its own last N (the
//! filters applied there); only the N latest keys of all of them are kept, and where they begin
//! on each node is the position the merged stream starts from.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
    sync::{Arc, Mutex},
};

use super::{
    peer::{self, PeerTarget, PeerTiming},
    position::Position,
};
use crate::proto::v1 as pb;

/// (recorded time, node index, cursor): the merge order of a record.
type Key = (u64, usize, u64);

pub async fn start_positions(
    peers: &[PeerTarget],
    request: &pb::GetFlowsRequest,
    timing: PeerTiming,
) -> Position {
    let n = usize::try_from(request.last).unwrap_or(usize::MAX);
    let latest: Arc<Mutex<BinaryHeap<Reverse<Key>>>> = Arc::default();
    let reads = peers.iter().enumerate().map(|(index, target)| {
        let latest = latest.clone();
        async move { read_node(index, target, request, timing, n, &latest).await }
    });
    let names: BTreeMap<usize, (String, u64)> = futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect();
    let kept = latest.lock().map(|heap| heap.clone()).unwrap_or_default();
    let mut starts: BTreeMap<usize, u64> = BTreeMap::new();
    for Reverse((_, node, cursor)) in kept {
        let start = starts.entry(node).or_insert(cursor);
        *start = (*start).min(cursor);
    }
    let mut position = Position::default();
    for (index, (name, last_cursor)) in names {
        let after = starts
            .get(&index)
            .map(|first| first - 1)
            .unwrap_or(last_cursor);
        position.cursors.insert(name, after);
    }
    position
}

/// One node's last N into `latest`; its name and last cursor, or nothing when unreachable
/// (the merged stream reports it).
async fn read_node(
    index: usize,
    target: &PeerTarget,
    request: &pb::GetFlowsRequest,
    timing: PeerTiming,
    n: usize,
    latest: &Mutex<BinaryHeap<Reverse<Key>>>,
) -> Option<(usize, (String, u64))> {
    let mut client = peer::connect(target, timing).await.ok()?;
    let status = peer::status(&mut client, timing).await.ok()?;
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            last: request.last,
            follow: false,
            allow: request.allow.clone(),
            deny: request.deny.clone(),
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner();
    let mut last_cursor = status.last_cursor;
    while let Ok(Some(message)) = stream.message().await {
        let Some(pb::get_flows_response::Event::Flow(flow)) = message.event else {
            continue;
        };
        last_cursor = last_cursor.max(flow.cursor);
        let time = flow
            .recorded_time
            .as_ref()
            .map(crate::store::time_ns)
            .unwrap_or(0);
        let Ok(mut heap) = latest.lock() else {
            return None;
        };
        heap.push(Reverse((time, index, flow.cursor)));
        if heap.len() > n {
            heap.pop();
        }
    }
    Some((index, (status.node, last_cursor)))
}
