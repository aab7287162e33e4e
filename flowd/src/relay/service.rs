//! The relay's FlowService: the agents' API over all of them.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status};

use super::{
    last,
    merge::MergeOrder,
    peer::{self, Start},
    position::Position,
    raw::{EncodedFlows, EncodedStream},
    stream::{self, MergePlan},
    RelayOptions,
};
use crate::proto::v1::{
    self as pb, flow_service_client::FlowServiceClient, flow_service_server::FlowService,
};

/// Messages a call may queue for its consumer before the merge waits for it.
const CONSUMER_BUFFER: usize = 256;

#[derive(Clone)]
pub struct RelayService {
    shared: Arc<Shared>,
}

struct Shared {
    options: RelayOptions,
    subscribers: AtomicUsize,
    started: Instant,
    /// GetGraph and RecommendPolicy calls running (each asks every node), up to maxQueries.
    queries: Arc<tokio::sync::Semaphore>,
}

impl RelayService {
    pub fn new(options: RelayOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                queries: Arc::new(tokio::sync::Semaphore::new(options.limits.max_queries)),
                options,
                subscribers: AtomicUsize::new(0),
                started: Instant::now(),
            }),
        }
    }
}

/// Refuses what the relay cannot answer, the way an agent would, naming the fix.
fn check(request: &pb::GetFlowsRequest) -> Result<Option<Position>, Status> {
    if request.after_cursor.is_some() {
        return Err(Status::invalid_argument(
            "after_cursor is one node's cursor; through the relay resume with resume_token, \
             from the last Checkpoint event received",
        ));
    }
    let resume = if request.resume_token.is_empty() {
        None
    } else {
        if request.last > 0 || request.since.is_some() || request.until.is_some() {
            return Err(Status::invalid_argument(
                "resume_token continues a stream where it stopped; it cannot be combined with \
                 last, since or until",
            ));
        }
        Some(
            Position::decode(&request.resume_token)
                .map_err(|err| Status::invalid_argument(err.to_string()))?,
        )
    };
    // Everything else as an agent checks it, so a bad filter fails here and not on each node.
    let plain = pb::GetFlowsRequest {
        resume_token: String::new(),
        ..request.clone()
    };
    crate::api::request::parse(&plain)?;
    Ok(resume)
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<pb::GetFlowsResponse, Status>> + Send>>;

/// Gives the subscription slot back however the call ends.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[tonic::async_trait]
impl EncodedFlows for RelayService {
    /// The call as the relay serves it: nodes' records forwarded as they were encoded.
    async fn open(
        &self,
        request: Request<pb::GetFlowsRequest>,
    ) -> Result<Response<EncodedStream>, Status> {
        let options = &self.shared.options;
        options.limits.check(request.get_ref())?;
        let request = request.into_inner();
        let resume = check(&request)?;
        let open = self.shared.subscribers.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.shared.clone());
        if open >= options.limits.max_subscribers {
            return Err(Status::resource_exhausted(format!(
                "{open} GetFlows calls are open, the relay's maxSubscribers; close one or raise \
                 maxSubscribers"
            )));
        }
        let ranged = request.since.is_some() || request.until.is_some();
        let order = if ranged && !request.follow && resume.is_none() {
            MergeOrder::Ended
        } else {
            MergeOrder::Recorded
        };
        let (tx, rx) = mpsc::channel((CONSUMER_BUFFER / stream::OUT_BATCH).max(1));
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let options = &shared.options;
            options
                .peers
                .wait_listed(options.timing.connect_timeout)
                .await;
            let (start, position) = match resume {
                Some(position) => (Start::After(Arc::new(position.clone())), position),
                None if request.last > 0 => {
                    let position =
                        last::start_positions(&options.peers.current(), &request, options.timing)
                            .await;
                    (Start::After(Arc::new(position.clone())), position)
                }
                None => (Start::AsRequested, Position::default()),
            };
            let limit = (request.last > 0 && !request.follow).then_some(request.last);
            let node_request = pb::GetFlowsRequest {
                resume_token: String::new(),
                last: if matches!(start, Start::After(_)) {
                    0
                } else {
                    request.last
                },
                ..request
            };
            let follow = node_request.follow;
            let spawn = |target: &peer::PeerTarget| {
                // Batches of up to BATCH records: the budget is in records.
                let batches = (options.peer_buffer / peer::BATCH).max(1);
                let (events, receiver) = mpsc::channel(batches);
                tokio::spawn(peer::run(
                    target.clone(),
                    node_request.clone(),
                    start.clone(),
                    options.timing,
                    events,
                ));
                receiver
            };
            let plan = MergePlan {
                order,
                limit,
                checkpoint_interval: options.checkpoint_interval,
                follow,
                position,
            };
            stream::merge(plan, options.peers.clone(), spawn, tx).await;
        });
        let messages = futures::StreamExt::flat_map(ReceiverStream::new(rx), futures::stream::iter);
        Ok(Response::new(Box::pin(messages)))
    }
}

type Timestamp = Option<pbjson_types::Timestamp>;

impl RelayService {
    /// `call` on every node at once: each node's answer, or why it gave none.
    async fn on_every_node<'p, T, Answer>(
        &self,
        peers: &'p [super::PeerTarget],
        call: impl Fn(FlowServiceClient<tonic::transport::Channel>) -> Answer,
    ) -> Vec<(&'p super::PeerTarget, Result<T, String>)>
    where
        Answer: std::future::Future<Output = Result<T, String>>,
    {
        let timing = self.shared.options.timing;
        let call = &call;
        let asks = peers.iter().map(|target| async move {
            let answer = match peer::connect(target, timing).await {
                Ok(client) => call(client).await,
                Err(message) => Err(message),
            };
            (target, answer)
        });
        futures::future::join_all(asks).await
    }

    /// RecommendPolicy on every node: the answers, and the nodes that did not give one.
    async fn ask_recommend(
        &self,
        peers: &[super::PeerTarget],
        asked: &pb::RecommendPolicyRequest,
    ) -> (Vec<pb::RecommendPolicyResponse>, Vec<String>) {
        let timing = self.shared.options.timing;
        let answers = self
            .on_every_node(peers, |mut client| {
                let asked = asked.clone();
                async move {
                    peer::recommend(&mut client, asked, timing)
                        .await
                        .map_err(|status| status.message().to_owned())
                }
            })
            .await;
        let mut proposals = Vec::new();
        let mut errors = Vec::new();
        for (target, answer) in answers {
            match answer {
                Ok(answer) => proposals.push(answer),
                Err(message) => errors.push(format!("{}: {message}", target.address)),
            }
        }
        (proposals, errors)
    }

    /// A window every node reads alike (fixed here, not by each node's clock), and the nodes
    /// known once the first list arrived.
    async fn window_and_peers(
        &self,
        since: &Timestamp,
        until: &Timestamp,
    ) -> Result<(Timestamp, Timestamp, Vec<super::PeerTarget>), Status> {
        let options = &self.shared.options;
        let now = crate::store::system_time_ns(std::time::SystemTime::now());
        let (since, until) = crate::api::request::window(since, until, now)?;
        options
            .peers
            .wait_listed(options.timing.connect_timeout)
            .await;
        Ok((
            Some(crate::flow::wire::timestamp_ns(since)),
            Some(crate::flow::wire::timestamp_ns(until)),
            options.peers.current(),
        ))
    }
}

#[tonic::async_trait]
impl FlowService for RelayService {
    type GetFlowsStream = FlowStream;

    /// The same call decoded, for in-process users of the trait; the served relay answers
    /// GetFlows through `PassThrough` and never decodes a record.
    async fn get_flows(
        &self,
        request: Request<pb::GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        let encoded = self.open(request).await?.into_inner();
        let decoded = futures::StreamExt::map(encoded, |message| {
            let message = message?;
            <pb::GetFlowsResponse as prost::Message>::decode(message.0)
                .map_err(|err| Status::internal(format!("relay message: {err}")))
        });
        Ok(Response::new(Box::pin(decoded)))
    }

    async fn get_graph(
        &self,
        request: Request<pb::GetGraphRequest>,
    ) -> Result<Response<pb::GetGraphResponse>, Status> {
        let request = request.into_inner();
        let options = &self.shared.options;
        options
            .limits
            .check_filters(&request.allow, &request.deny)?;
        let _permit = crate::api::ApiLimits::query_permit(&self.shared.queries)?;
        let (since, until, peers) = self
            .window_and_peers(&request.since, &request.until)
            .await?;
        let max_edges = options.limits.graph_edges(request.max_edges);
        let asked = pb::GetGraphRequest {
            since,
            until,
            max_edges: u32::try_from(max_edges).unwrap_or(u32::MAX),
            ..request
        };
        let timing = options.timing;
        let answers = self
            .on_every_node(&peers, |mut client| {
                let asked = asked.clone();
                async move { peer::graph(&mut client, asked, timing).await }
            })
            .await;
        let mut graphs = Vec::new();
        let mut unavailable = Vec::new();
        for (target, answer) in answers {
            match answer {
                Ok(graph) => graphs.push(graph),
                Err(message) => unavailable.push(pb::NodeStatus {
                    address: target.address.clone(),
                    state: pb::NodeState::Unavailable as i32,
                    message,
                    ..Default::default()
                }),
            }
        }
        let mut graph = crate::graph::merge(graphs, max_edges);
        graph.since = asked.since;
        graph.until = asked.until;
        graph.unavailable.extend(unavailable);
        Ok(Response::new(graph))
    }

    /// Every node checks the proposal against its own history; the proposal is the one of the
    /// node that saw the most of the edge denied, and the what-if counts add up.
    async fn recommend_policy(
        &self,
        request: Request<pb::RecommendPolicyRequest>,
    ) -> Result<Response<pb::RecommendPolicyResponse>, Status> {
        let request = request.into_inner();
        let _permit = crate::api::ApiLimits::query_permit(&self.shared.queries)?;
        let (since, until, peers) = self
            .window_and_peers(&request.since, &request.until)
            .await?;
        let asked = pb::RecommendPolicyRequest {
            since,
            until,
            ..request
        };
        // First every node proposes from what it saw; the proposal of the node that saw most of
        // the edge denied is the one, and then every node checks that one against its history.
        let (proposals, mut errors) = self.ask_recommend(&peers, &asked).await;
        let denied = |r: &pb::RecommendPolicyResponse| {
            r.what_if
                .as_ref()
                .map_or(0, |w| w.edge_allowed + w.edge_still_denied)
        };
        let Some(mut best) = proposals.into_iter().max_by_key(denied) else {
            return Err(Status::unavailable(format!(
                "no node answered: {}",
                errors.join("; ")
            )));
        };
        if !best.yaml.is_empty() && asked.proposal.is_empty() {
            let check = pb::RecommendPolicyRequest {
                proposal: best.yaml.clone(),
                ..asked
            };
            let (checks, check_errors) = self.ask_recommend(&peers, &check).await;
            errors = check_errors;
            let mut total = pb::WhatIf::default();
            for w in checks.iter().filter_map(|c| c.what_if.as_ref()) {
                total.flows_checked += w.flows_checked;
                total.edge_allowed += w.edge_allowed;
                total.edge_still_denied += w.edge_still_denied;
                total.newly_denied += w.newly_denied;
                total.newly_allowed_elsewhere += w.newly_allowed_elsewhere;
                total
                    .newly_denied_examples
                    .extend(w.newly_denied_examples.iter().cloned());
            }
            total.newly_denied_examples.truncate(10);
            best.what_if = Some(total);
        }
        best.notes
            .extend(errors.into_iter().map(|e| format!("not checked on {e}")));
        Ok(Response::new(best))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let options = &self.shared.options;
        options
            .peers
            .wait_listed(options.timing.connect_timeout)
            .await;
        let peers = options.peers.current();
        let timing = options.timing;
        let answers = self
            .on_every_node(&peers, |mut client| async move {
                peer::status(&mut client, timing).await
            })
            .await;
        let mut status = pb::GetStatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            node: options.name.clone(),
            uptime: Some(pbjson_types::Duration {
                seconds: self.shared.started.elapsed().as_secs() as i64,
                nanos: 0,
            }),
            subscribers: self.shared.subscribers.load(Ordering::Relaxed) as u32,
            ..Default::default()
        };
        for (target, answer) in answers {
            let node = match answer {
                Ok(node) => {
                    status.flows_recorded += node.flows_recorded;
                    status.flows_stored += node.flows_stored;
                    status.flows_per_second += node.flows_per_second;
                    status.active_flows += node.active_flows;
                    status.flow_map_capacity += node.flow_map_capacity;
                    for (cause, count) in &node.lost {
                        *status.lost.entry(cause.clone()).or_default() += count;
                    }
                    pb::NodeStatus {
                        node: node.node,
                        address: target.address.clone(),
                        state: pb::NodeState::Connected as i32,
                        lost: node.lost,
                        last_cursor: node.last_cursor,
                        ..Default::default()
                    }
                }
                Err(message) => pb::NodeStatus {
                    address: target.address.clone(),
                    state: pb::NodeState::Unavailable as i32,
                    message,
                    ..Default::default()
                },
            };
            status.nodes.push(node);
        }
        Ok(Response::new(status))
    }
}
