use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{atomic::Ordering, Arc},
};

use tokio::{
    net::{TcpListener, UnixListener},
    sync::mpsc,
};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tokio_util::sync::CancellationToken;
use tonic::{
    transport::{Certificate, Identity, ServerTlsConfig},
    Request, Response, Status,
};

use super::limits::ApiLimits;
use super::request;
use super::socket_file;
use crate::{
    proto::{
        self,
        v1::{
            self as pb,
            flow_service_server::{FlowService, FlowServiceServer},
        },
    },
    store::{Hub, SubscriptionEvent},
    telemetry::{LostCause, Telemetry},
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot create socket directory {path}: {source}")]
    SocketDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another agent is already serving on {0}; stop it or choose another --socket")]
    SocketInUse(PathBuf),
    #[error("cannot restrict unix socket {path} to its owner and group: {source}")]
    SocketMode {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the unix socket's directory {0} is world-writable without the sticky bit: another user could replace the socket; choose another --socket directory (e.g. /run/flowd)")]
    SocketDirWritable(PathBuf),
    #[error("socketGroup {group}: {reason}")]
    SocketGroup { group: String, reason: String },
    #[error("cannot listen on unix socket {path}: {source}")]
    BindUnix {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    BindTcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS file {path}: {source}")]
    TlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS settings: {0}")]
    Tls(String),
    #[error(
        "TLS certificate {cert} with key {key} cannot be used: {reason}. Give a PEM certificate \
         chain and the PEM private key (PKCS#8, PKCS#1 or SEC1) that belongs to it"
    )]
    TlsIdentity {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("server reflection: {0}")]
    Reflection(String),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Messages a stream may queue for a client before it waits for that client.
const STREAM_BUFFER: usize = 256;

#[derive(Clone)]
pub struct FlowApi {
    hub: Hub,
    telemetry: Arc<Telemetry>,
    limits: ApiLimits,
    /// The policy stage's evaluator, when policies are loaded: the graph's policy board and
    /// the recommendations with their what-if checks read it.
    attributor: Option<Arc<crate::attribution::Attributor>>,
    /// Window-reading calls (GetGraph, RecommendPolicy) running, bounded by maxQueries.
    queries: Arc<tokio::sync::Semaphore>,
}

impl FlowApi {
    pub fn new(hub: Hub, telemetry: Arc<Telemetry>) -> Self {
        Self {
            hub,
            telemetry,
            limits: ApiLimits::default(),
            attributor: None,
            queries: Arc::new(tokio::sync::Semaphore::new(
                ApiLimits::default().max_queries,
            )),
        }
    }

    /// The policies the agent evaluates with, for the policy board and recommendations.
    pub fn with_policies(mut self, attributor: Arc<crate::attribution::Attributor>) -> Self {
        self.attributor = Some(attributor);
        self
    }

    /// Bounds on subscriptions, filters, request size and idle connections.
    pub fn with_limits(mut self, limits: ApiLimits) -> Self {
        self.limits = limits;
        self.queries = Arc::new(tokio::sync::Semaphore::new(limits.max_queries));
        self
    }
}

/// A failed history read as the client sees it.
fn history_status(err: crate::store::StoreError) -> Status {
    tracing::error!(error = %err, "reading the flow history");
    // A history that cannot be opened now (disk full) is a retryable condition for the
    // client, not a bug in the agent.
    match err {
        crate::store::StoreError::Unavailable { .. } => Status::unavailable(err.to_string()),
        _ => Status::internal(err.to_string()),
    }
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<pb::GetFlowsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl FlowService for FlowApi {
    type GetFlowsStream = FlowStream;

    async fn get_flows(
        &self,
        request: Request<pb::GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        self.limits.check(request.get_ref())?;
        let query = request::parse(request.get_ref())?;
        let open = self.telemetry.subscribers.fetch_add(1, Ordering::Relaxed) as usize;
        if open >= self.limits.max_subscribers {
            self.telemetry.subscribers.fetch_sub(1, Ordering::Relaxed);
            return Err(Status::resource_exhausted(format!(
                "{open} GetFlows calls are open, the agent's maxSubscribers; close one or raise \
                 maxSubscribers"
            )));
        }
        let mut subscription =
            self.hub
                .subscribe_with(query.backlog, query.follow, query.watermarks, query.matcher);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let telemetry = self.telemetry.clone();
        tokio::spawn(async move {
            loop {
                // A follower whose filter matches nothing would otherwise learn that its client
                // left only at its next send, that is never.
                let event = tokio::select! {
                    event = subscription.next() => event,
                    () = tx.closed() => break,
                };
                let Some(event) = event else { break };
                let event = match event {
                    Ok(SubscriptionEvent::Flow(flow)) => {
                        pb::get_flows_response::Event::Flow((*flow).clone())
                    }
                    Ok(SubscriptionEvent::Lost {
                        count,
                        resume_after,
                        next_cursor,
                    }) => {
                        telemetry.add_lost(LostCause::SlowSubscriber, count);
                        pb::get_flows_response::Event::LostRecords(pb::LostRecords {
                            count,
                            resume_after,
                            next_cursor,
                            node: String::new(),
                        })
                    }
                    Ok(SubscriptionEvent::Watermark(ns)) => {
                        pb::get_flows_response::Event::Watermark(pb::Watermark {
                            time: Some(crate::flow::wire::timestamp_ns(ns)),
                        })
                    }
                    Err(err) => {
                        let _ = tx.send(Err(history_status(err))).await;
                        break;
                    }
                };
                let response = pb::GetFlowsResponse { event: Some(event) };
                if tx.send(Ok(response)).await.is_err() {
                    break; // client went away
                }
            }
            telemetry.subscribers.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_graph(
        &self,
        request: Request<pb::GetGraphRequest>,
    ) -> Result<Response<pb::GetGraphResponse>, Status> {
        let request = request.into_inner();
        self.limits.check_filters(&request.allow, &request.deny)?;
        let now = crate::store::system_time_ns(std::time::SystemTime::now());
        let (since, until) = request::window(&request.since, &request.until, now)?;
        let matcher = crate::query::FlowMatcher::new(&request.allow, &request.deny)
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        let max_edges = self.limits.graph_edges(request.max_edges);
        let permit = ApiLimits::query_permit(&self.queries)?;
        let loaded = self
            .attributor
            .as_ref()
            .map(|a| a.loaded_policies())
            .unwrap_or_default();
        let store = self.hub.store().clone();
        let graph = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            crate::graph::from_history(&store, &matcher, since, until, max_edges, &loaded)
        })
        .await
        .map_err(|err| Status::internal(err.to_string()))?
        .map_err(history_status)?;
        Ok(Response::new(graph))
    }

    async fn recommend_policy(
        &self,
        request: Request<pb::RecommendPolicyRequest>,
    ) -> Result<Response<pb::RecommendPolicyResponse>, Status> {
        let request = request.into_inner();
        let Some(attributor) = self.attributor.clone() else {
            return Err(Status::failed_precondition(
                "this agent evaluates no policies: give it policyFiles, or kubernetes: true \
                 to read them from the API",
            ));
        };
        let now = crate::store::system_time_ns(std::time::SystemTime::now());
        let (since, until) = request::window(&request.since, &request.until, now)?;
        let permit = ApiLimits::query_permit(&self.queries)?;
        let store = self.hub.store().clone();
        let answer = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let query = crate::proposal::EdgeQuery {
                source: &request.source,
                destination: &request.destination,
                protocol: request.protocol,
                since_ns: since,
                until_ns: until,
                proposal: (!request.proposal.is_empty()).then_some(request.proposal.as_str()),
            };
            crate::proposal::propose(&store, &attributor, &query)
        })
        .await
        .map_err(|err| Status::internal(err.to_string()))?;
        match answer {
            Ok(response) => Ok(Response::new(response)),
            Err(crate::proposal::ProposalError::Store(err)) => Err(history_status(err)),
            Err(err) => Err(Status::internal(err.to_string())),
        }
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let t = &self.telemetry;
        let uptime = t.started.elapsed();
        let store = self.hub.store().clone();
        let bounds = tokio::task::spawn_blocking(move || store.bounds())
            .await
            .map_err(|err| Status::internal(err.to_string()))?;
        let failure = self.hub.store().write_failure();
        let (first_cursor, last_cursor) = match bounds {
            Ok(bounds) => bounds.unwrap_or((0, 0)),
            // A history that cannot be read now is what status is for: say so, not INTERNAL.
            Err(_) => (0, self.hub.store().last_cursor()),
        };
        let history = pb::HistoryHealth {
            write_failing: failure.is_some(),
            write_error: failure
                .as_ref()
                .map(|f| f.error.clone())
                .unwrap_or_default(),
            failing_since: failure.map(|f| crate::flow::wire::timestamp(f.since)),
            records_held: t.history_held.load(Ordering::Relaxed),
        };
        let counters = t.counters();
        let lost = t.lost(false);
        Ok(Response::new(pb::GetStatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            node: t.node.clone(),
            uptime: Some(pbjson_types::Duration {
                seconds: uptime.as_secs() as i64,
                nanos: uptime.subsec_nanos() as i32,
            }),
            interfaces: t
                .interfaces()
                .into_iter()
                .map(|i| pb::AttachedInterface {
                    interface: Some(pb::Interface {
                        name: i.name,
                        index: i.index,
                        netns_cookie: i.netns_cookie,
                        netns: i.netns,
                    }),
                    attach_mode: i.mode.to_owned(),
                })
                .collect(),
            flows_recorded: t.flows_recorded.load(Ordering::Relaxed),
            flows_stored: self.hub.store().len(),
            active_flows: t.active_flows.load(Ordering::Relaxed),
            flow_map_capacity: t.flow_map_capacity,
            counters: counters.into_iter().collect(),
            subscribers: t.subscribers.load(Ordering::Relaxed),
            first_cursor,
            last_cursor,
            flows_per_second: t.rate(),
            lost: lost.into_iter().collect(),
            programs: t.programs.lock().map(|p| p.clone()).unwrap_or_default(),
            store_bytes: self.hub.store().record_bytes(),
            store_file_bytes: self.hub.store().file_bytes(),
            history: Some(history),
            nodes: Vec::new(),
        }))
    }
}

/// TLS for the TCP listener; with `client_ca`, clients must present a certificate it signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, ApiError> {
    std::fs::read(path).map_err(|source| ApiError::TlsFile {
        path: path.to_owned(),
        source,
    })
}

impl TlsFiles {
    fn server_config(&self) -> Result<ServerTlsConfig, ApiError> {
        let identity = Identity::from_pem(read(&self.cert)?, read(&self.key)?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        // tonic parses the files only when serving, after the agent said it is ready; building
        // its acceptor now refuses a bad file at start, with tonic's own parser.
        tonic::transport::Server::builder()
            .tls_config(config.clone())
            .map_err(|err| ApiError::TlsIdentity {
                cert: self.cert.clone(),
                key: self.key.clone(),
                reason: error_chain(&err),
            })?;
        Ok(config)
    }
}

/// An error with its causes: tonic's transport error says only "transport error" itself.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Bound listeners: binding happens before the agent reports ready, so clients never race it.
pub struct Listeners {
    unix: Option<(UnixListener, PathBuf)>,
    tcp: Option<(TcpListener, Option<ServerTlsConfig>)>,
}

impl Listeners {
    pub async fn bind(
        socket: &Path,
        socket_group: Option<&str>,
        tcp: Option<SocketAddr>,
        tls: Option<&TlsFiles>,
    ) -> Result<Self, ApiError> {
        let tls = tls.map(TlsFiles::server_config).transpose()?;
        if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
            socket_file::prepare_directory(dir)?;
        }
        if socket.exists() {
            // A live agent answers; a stale file from a crash does not and is replaced.
            if tokio::net::UnixStream::connect(socket).await.is_ok() {
                return Err(ApiError::SocketInUse(socket.to_owned()));
            }
            let _ = std::fs::remove_file(socket);
        }
        let unix = UnixListener::bind(socket).map_err(|source| ApiError::BindUnix {
            path: socket.to_owned(),
            source,
        })?;
        // Nothing is served until the agent is ready, so the moment before this is harmless.
        socket_file::restrict(socket, socket_group)?;
        let tcp = match tcp {
            Some(addr) => Some((tcp_listener(addr).await?, tls)),
            None => None,
        };
        Ok(Self {
            unix: Some((unix, socket.to_owned())),
            tcp,
        })
    }

    /// A TCP listener alone (the relay, which has no node-local socket to offer).
    pub async fn bind_tcp(addr: SocketAddr, tls: Option<&TlsFiles>) -> Result<Self, ApiError> {
        let tls = tls.map(TlsFiles::server_config).transpose()?;
        Ok(Self {
            unix: None,
            tcp: Some((tcp_listener(addr).await?, tls)),
        })
    }

    /// The TCP listener and its TLS, for a server other than the API's (the UI).
    pub fn into_tcp(self) -> Option<(TcpListener, Option<ServerTlsConfig>)> {
        self.tcp
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }
}

async fn tcp_listener(addr: SocketAddr) -> Result<TcpListener, ApiError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::BindTcp { addr, source })
}

/// Serves FlowService, gRPC health and server reflection until `shutdown`, then lets open
/// streams finish and removes the socket file.
pub async fn serve(
    api: FlowApi,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let limits = api.limits;
    let service = FlowServiceServer::new(api).max_decoding_message_size(limits.max_request_bytes);
    serve_service(service, limits, listeners, shutdown).await
}

/// Serves a flowd.v1.FlowService implementation (the agent's generated server, the relay's
/// pass-through one) with the same health, reflection, limits and keepalive.
pub async fn serve_service<S>(
    service: S,
    limits: ApiLimits,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ApiError>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let Listeners { unix, tcp } = listeners;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(S::NAME, tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|err| ApiError::Reflection(err.to_string()))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|err| ApiError::Reflection(err.to_string()))?;
    let router = |builder: &mut tonic::transport::Server| {
        builder
            .add_service(service.clone())
            .add_service(health_service.clone())
            .add_service(reflection.clone())
            .add_service(reflection_alpha.clone())
    };

    let stop_health = {
        let health = health.clone();
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            health
                .set_service_status(S::NAME, tonic_health::ServingStatus::NotServing)
                .await;
        }
    };
    tokio::spawn(stop_health);

    // Pings on quiet connections: a client that vanished without closing is noticed and its
    // streams end, instead of holding a subscription slot forever.
    let builder = || {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(limits.keepalive_interval))
            .http2_keepalive_timeout(Some(limits.keepalive_timeout))
    };
    let unix_server = async {
        let Some((unix, socket_path)) = unix else {
            return Ok::<_, ApiError>(());
        };
        let served = router(&mut builder())
            .serve_with_incoming_shutdown(
                tokio_stream::StreamExt::map(
                    tokio_stream::wrappers::UnixListenerStream::new(unix),
                    |stream| stream.map(super::unix_conn::UnixConnection::new),
                ),
                shutdown.clone().cancelled_owned(),
            )
            .await;
        let _ = std::fs::remove_file(&socket_path);
        Ok(served?)
    };
    let tcp_server = async {
        let Some((listener, tls)) = tcp else {
            return Ok(());
        };
        let mut builder = builder();
        if let Some(tls) = tls {
            builder = builder
                .tls_config(tls)
                .map_err(|err| ApiError::Tls(err.to_string()))?;
        }
        router(&mut builder)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                shutdown.clone().cancelled_owned(),
            )
            .await?;
        Ok::<_, ApiError>(())
    };
    tokio::try_join!(unix_server, tcp_server).map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[tokio::test]
    async fn the_socket_is_for_its_owner_and_group_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("flowd.sock");
        // The most permissive umask: without the explicit mode the socket would be 0777.
        let previous = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let bound = Listeners::bind(&socket, None, None, None).await;
        nix::sys::stat::umask(previous);
        bound.unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, socket_file::SOCKET_MODE);
    }
}
