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
use tonic::{Request, Response, Status};

use super::{
    convert::flow_to_proto,
    proto::v1::{
        self as pb,
        flow_service_server::{FlowService, FlowServiceServer},
    },
};
use crate::{
    store::{Hub, SubscriptionEvent},
    telemetry::Telemetry,
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
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Messages a stream may queue for a client before it waits for that client.
const STREAM_BUFFER: usize = 256;

#[derive(Clone)]
pub struct FlowApi {
    hub: Hub,
    telemetry: Arc<Telemetry>,
}

impl FlowApi {
    pub fn new(hub: Hub, telemetry: Arc<Telemetry>) -> Self {
        Self { hub, telemetry }
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
        let request = request.into_inner();
        let last = usize::try_from(request.last).unwrap_or(usize::MAX);
        let mut subscription = self.hub.subscribe(last, request.follow);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let telemetry = self.telemetry.clone();
        telemetry.subscribers.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            while let Some(event) = subscription.next().await {
                let event = match event {
                    SubscriptionEvent::Flow(flow) => {
                        pb::get_flows_response::Event::Flow(flow_to_proto(&flow))
                    }
                    SubscriptionEvent::Lost { count, next_cursor } => {
                        telemetry.add_counter("subscriber_records_lost", count);
                        pb::get_flows_response::Event::LostRecords(pb::LostRecords {
                            count,
                            next_cursor,
                        })
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

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let t = &self.telemetry;
        let uptime = t.started.elapsed();
        let (first_cursor, last_cursor) = self.hub.history().bounds().unwrap_or((0, 0));
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
            flows_stored: self.hub.history().len() as u64,
            active_flows: t.active_flows.load(Ordering::Relaxed),
            flow_map_capacity: t.flow_map_capacity,
            counters: t.counters().into_iter().collect(),
            subscribers: t.subscribers.load(Ordering::Relaxed),
            first_cursor,
            last_cursor,
        }))
    }
}

/// Bound listeners: binding happens before the agent reports ready, so clients never race it.
pub struct Listeners {
    unix: UnixListener,
    socket_path: PathBuf,
    tcp: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(socket: &Path, tcp: Option<SocketAddr>) -> Result<Self, ApiError> {
        if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| ApiError::SocketDir {
                path: dir.to_owned(),
                source,
            })?;
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
        let tcp = match tcp {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ApiError::BindTcp { addr, source })?,
            ),
            None => None,
        };
        Ok(Self {
            unix,
            socket_path: socket.to_owned(),
            tcp,
        })
    }
}

/// Serves until `shutdown`, then lets open streams finish and removes the socket file.
pub async fn serve(
    api: FlowApi,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let Listeners {
        unix,
        socket_path,
        tcp,
    } = listeners;
    let unix_server = tonic::transport::Server::builder()
        .add_service(FlowServiceServer::new(api.clone()))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(unix),
            shutdown.clone().cancelled_owned(),
        );
    let result = match tcp {
        Some(tcp) => {
            let tcp_server = tonic::transport::Server::builder()
                .add_service(FlowServiceServer::new(api))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(tcp),
                    shutdown.cancelled_owned(),
                );
            tokio::try_join!(unix_server, tcp_server).map(|_| ())
        }
        None => unix_server.await,
    };
    let _ = std::fs::remove_file(&socket_path);
    result.map_err(ApiError::from)
}
