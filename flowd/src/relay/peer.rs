//! One node's stream for one relay call: connect (again and again), say who the node is, push
//! the query down, and hand records, watermarks, state changes and gaps to the merge. After an
//! outage the node is read from where this stream stopped, out of its own history.

use std::time::Duration;

use futures::FutureExt as _;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::{
    position::Position,
    raw::{self, Encoded, MergedFlow, NodeCodec, Parsed},
};
use crate::{
    api::client::{self, ClientTls},
    proto::v1::{self as pb, flow_service_client::FlowServiceClient},
};

/// GetFlows on a node with its responses kept encoded.
async fn get_flows_encoded(
    channel: Channel,
    request: pb::GetFlowsRequest,
) -> Result<tonic::Streaming<Encoded>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
    grpc.ready()
        .await
        .map_err(|err| tonic::Status::unavailable(format!("the node is not ready: {err}")))?;
    let path = http::uri::PathAndQuery::from_static("/flowd.v1.FlowService/GetFlows");
    Ok(grpc
        .server_streaming(tonic::Request::new(request), path, NodeCodec)
        .await?
        .into_inner())
}

/// Records handed to the merge at once: one channel operation per batch, not per record.
pub const BATCH: usize = 64;

/// Hands the batched records over; false when the merge stopped listening.
async fn flush(events: &mpsc::Sender<NodeEvent>, batch: &mut Vec<MergedFlow>) -> bool {
    batch.is_empty()
        || events
            .send(NodeEvent::Flows(std::mem::take(batch)))
            .await
            .is_ok()
}

/// An agent the relay reads: its `host:port` and the TLS to reach it with.
#[derive(Clone, Debug)]
pub struct PeerTarget {
    pub address: String,
    pub tls: Option<ClientTls>,
}

/// How long the relay waits on a node before calling it unavailable, and how it retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerTiming {
    pub connect_timeout: Duration,
    /// For calls that read a node's history whole (GetGraph).
    pub query_timeout: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for PeerTiming {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(30),
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// What a node stream tells the merge.
#[derive(Debug)]
pub enum NodeEvent {
    /// The node's name (from its GetStatus), and the cursor the stream starts after when the
    /// stream starts at the node's present (nothing to replay).
    Identified {
        node: String,
        start: Option<u64>,
    },
    /// Records in the node's order, as many as had arrived together (at most `BATCH`).
    Flows(Vec<MergedFlow>),
    Watermark(u64),
    State {
        state: pb::NodeState,
        lag_records: u64,
        message: String,
    },
    /// Records the node's history no longer holds: retention passed the position.
    Gap {
        count: u64,
        resume_after: u64,
    },
    Ended,
}

/// Where a node's stream starts the first time it connects.
#[derive(Clone, Debug)]
pub enum Start {
    /// The consumer's request as it is (last N, since/until, or only what comes next).
    AsRequested,
    /// After each node's cursor in the position; a node it does not name from its time.
    After(std::sync::Arc<Position>),
}

pub async fn connect(
    target: &PeerTarget,
    timing: PeerTiming,
) -> Result<FlowServiceClient<Channel>, String> {
    channel(target, timing).await.map(client::flow_client)
}

async fn channel(target: &PeerTarget, timing: PeerTiming) -> Result<Channel, String> {
    match tokio::time::timeout(
        timing.connect_timeout,
        client::channel_address(&target.address, target.tls.as_ref()),
    )
    .await
    {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timing.connect_timeout)
        )),
    }
}

pub async fn status(
    client: &mut FlowServiceClient<Channel>,
    timing: PeerTiming,
) -> Result<pb::GetStatusResponse, String> {
    match tokio::time::timeout(
        timing.connect_timeout,
        client.get_status(pb::GetStatusRequest {}),
    )
    .await
    {
        Ok(Ok(status)) => Ok(status.into_inner()),
        Ok(Err(status)) => Err(status.message().to_owned()),
        Err(_) => Err("GetStatus unanswered".to_owned()),
    }
}

pub async fn graph(
    client: &mut FlowServiceClient<Channel>,
    request: pb::GetGraphRequest,
    timing: PeerTiming,
) -> Result<pb::GetGraphResponse, String> {
    match tokio::time::timeout(timing.query_timeout, client.get_graph(request)).await {
        Ok(Ok(graph)) => Ok(graph.into_inner()),
        Ok(Err(status)) => Err(status.message().to_owned()),
        Err(_) => Err(format!(
            "GetGraph unanswered after {:?} (the relay's queryTimeout)",
            timing.query_timeout
        )),
    }
}

pub async fn recommend(
    client: &mut FlowServiceClient<Channel>,
    request: pb::RecommendPolicyRequest,
    timing: PeerTiming,
) -> Result<pb::RecommendPolicyResponse, tonic::Status> {
    match tokio::time::timeout(timing.query_timeout, client.recommend_policy(request)).await {
        Ok(answer) => answer.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "RecommendPolicy unanswered after {:?} (the relay's queryTimeout)",
            timing.query_timeout
        ))),
    }
}

/// Streams one node into `events` until the stream ends (not following) or the merge stops
/// listening.
pub async fn run(
    target: PeerTarget,
    request: pb::GetFlowsRequest,
    start: Start,
    timing: PeerTiming,
    events: mpsc::Sender<NodeEvent>,
) {
    let mut cursor: Option<u64> = None;
    let mut connected_before = false;
    let mut unavailable_said = false;
    let mut retry = timing.retry_min;
    loop {
        let attempt = async {
            let channel = channel(&target, timing).await?;
            let mut client = client::flow_client(channel.clone());
            let status = status(&mut client, timing).await?;
            Ok::<_, String>((channel, status))
        };
        let (channel, status) = match attempt.await {
            Ok(connected) => connected,
            Err(message) => {
                if !unavailable_said {
                    unavailable_said = true;
                    let state = NodeEvent::State {
                        state: pb::NodeState::Unavailable,
                        lag_records: 0,
                        message,
                    };
                    if events.send(state).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = events.closed() => return,
                }
                retry = (retry * 2).min(timing.retry_max);
                continue;
            }
        };
        retry = timing.retry_min;
        let mut node_request = request.clone();
        node_request.watermarks = request.follow;
        if !connected_before {
            let known = match &start {
                Start::After(position) => position.cursors.get(&status.node).copied(),
                Start::AsRequested => None,
            };
            cursor = known;
            if let (None, Start::After(position)) = (known, &start) {
                // A node the position does not name (new since): from the position's time.
                node_request.last = 0;
                node_request.since = Some(crate::flow::wire::timestamp_ns(position.created_ns));
            }
            let starts_now = cursor.is_none()
                && node_request.last == 0
                && node_request.since.is_none()
                && node_request.until.is_none();
            if starts_now {
                // Only what comes next: the node's present is the position to resume from.
                cursor = Some(status.last_cursor);
            }
            let identified = NodeEvent::Identified {
                node: status.node.clone(),
                start: starts_now.then_some(status.last_cursor),
            };
            if events.send(identified).await.is_err() {
                return;
            }
        }
        if let Some(after) = cursor {
            if status.flows_stored > 0 && status.first_cursor > after + 1 {
                let gap = NodeEvent::Gap {
                    count: status.first_cursor - after - 1,
                    resume_after: after,
                };
                if events.send(gap).await.is_err() {
                    return;
                }
                cursor = Some(status.first_cursor - 1);
            }
        }
        if let Some(after) = cursor.filter(|_| connected_before || matches!(start, Start::After(_)))
        {
            node_request.after_cursor = Some(after);
            node_request.last = 0;
            node_request.since = None;
            node_request.until = None;
        }
        let lag_records = cursor
            .map(|c| status.last_cursor.saturating_sub(c))
            .unwrap_or(0);
        let catching_up = connected_before;
        let state = NodeEvent::State {
            state: if catching_up {
                pb::NodeState::CatchingUp
            } else {
                pb::NodeState::Connected
            },
            lag_records,
            message: String::new(),
        };
        unavailable_said = false;
        connected_before = true;
        if events.send(state).await.is_err() {
            return;
        }
        let mut stream = match get_flows_encoded(channel, node_request).await {
            Ok(stream) => stream,
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                // The node refuses the query itself: the relay would only ask again.
                let _ = events
                    .send(NodeEvent::State {
                        state: pb::NodeState::Unavailable,
                        lag_records: 0,
                        message: status.message().to_owned(),
                    })
                    .await;
                let _ = events.send(NodeEvent::Ended).await;
                return;
            }
            Err(_) => continue,
        };
        let mut caught_up = !catching_up;
        let mut batch: Vec<MergedFlow> = Vec::new();
        let ended_reason = loop {
            // Wait only when nothing is batched; otherwise take what has already arrived, and
            // hand the batch over once nothing more is ready.
            let message = if batch.is_empty() {
                tokio::select! {
                    message = stream.message() => message,
                    () = events.closed() => return,
                }
            } else {
                match stream.message().now_or_never() {
                    Some(message) => message,
                    None => {
                        if !flush(&events, &mut batch).await {
                            return;
                        }
                        continue;
                    }
                }
            };
            let event = match message.map(|m| m.map(raw::parse)) {
                Ok(Some(Ok(Some(Parsed::Flow(flow))))) => {
                    cursor = Some(flow.cursor);
                    batch.push(flow);
                    if batch.len() >= BATCH && !flush(&events, &mut batch).await {
                        return;
                    }
                    continue;
                }
                Ok(Some(Ok(Some(Parsed::Other(event))))) => *event,
                Ok(Some(Ok(None))) => continue,
                Ok(Some(Err(err))) => {
                    break Some(format!("undecodable message from the node: {err}"))
                }
                Ok(None) => break None,
                Err(status) => break Some(status.message().to_owned()),
            };
            // Anything else goes after the records before it.
            if !flush(&events, &mut batch).await {
                return;
            }
            let forwarded = match event {
                pb::get_flows_response::Event::Watermark(mark) => {
                    if !caught_up {
                        caught_up = true;
                        let live = NodeEvent::State {
                            state: pb::NodeState::Connected,
                            lag_records: 0,
                            message: String::new(),
                        };
                        if events.send(live).await.is_err() {
                            return;
                        }
                    }
                    NodeEvent::Watermark(mark.time.as_ref().map(crate::store::time_ns).unwrap_or(0))
                }
                pb::get_flows_response::Event::LostRecords(lost) => {
                    // This relay read the node too slowly; the node still holds them: read
                    // them again from its history.
                    cursor = Some(lost.resume_after);
                    break Some("fell behind the node; reading its history".to_owned());
                }
                _ => continue,
            };
            if events.send(forwarded).await.is_err() {
                return;
            }
        };
        if !flush(&events, &mut batch).await {
            return;
        }
        match ended_reason {
            None if !request.follow => {
                let _ = events.send(NodeEvent::Ended).await;
                return;
            }
            Some(reason)
                if !request.follow && (request.since.is_some() || request.until.is_some()) =>
            {
                // A range is read in end-time order, and a cursor cannot resume that order: the
                // consumer is told this node's part is incomplete rather than given a wrong one.
                let _ = events
                    .send(NodeEvent::State {
                        state: pb::NodeState::Unavailable,
                        lag_records: 0,
                        message: format!("the range read was interrupted ({reason}); ask again"),
                    })
                    .await;
                let _ = events.send(NodeEvent::Ended).await;
                return;
            }
            None => tracing::info!(node = %status.node, "node stream ended; reconnecting"),
            Some(reason) => {
                tracing::info!(node = %status.node, %reason, "node stream interrupted; reconnecting")
            }
        }
    }
}
