//! Connecting to an agent, for `flowd dump`, `flowd status` and tests.

use std::{net::SocketAddr, path::Path};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::proto::v1::flow_service_client::FlowServiceClient;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no flowd agent answers on {path}: {reason}. Start one with `sudo flowd run`, or point \
         --socket at the agent's socket"
    )]
    NoAgent { path: String, reason: String },
    #[error("cannot reach flowd at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("the agent refused the request: {}", .0.message())]
    Refused(Box<tonic::Status>),
}

/// Connects over the agent's unix socket.
pub async fn connect_unix(socket: &Path) -> Result<FlowServiceClient<Channel>, ClientError> {
    Ok(flow_client(channel_unix(socket).await?))
}

/// Connects over TCP (`--server`), with TLS when `tls` is given.
pub async fn connect_tcp(
    addr: SocketAddr,
    tls: Option<&ClientTls>,
) -> Result<FlowServiceClient<Channel>, ClientError> {
    Ok(flow_client(channel_tcp(addr, tls).await?))
}

pub fn flow_client(channel: Channel) -> FlowServiceClient<Channel> {
    FlowServiceClient::new(channel).max_decoding_message_size(64 << 20)
}

/// A channel over the agent's unix socket, for any of the services it serves.
pub async fn channel_unix(socket: &Path) -> Result<Channel, ClientError> {
    let path = socket.to_owned();
    let no_agent = |reason: String| ClientError::NoAgent {
        path: socket.display().to_string(),
        reason,
    };
    if !path.exists() {
        return Err(no_agent("the socket does not exist".to_owned()));
    }
    // The URI is required by the API but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|err| no_agent(source_chain(&err)))?;
    Ok(channel)
}

/// TLS for a TCP connection: the CA that signed the agent's certificate, optionally a client
/// certificate, and the name the agent's certificate carries.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub server_name: Option<String>,
}

/// A channel over TCP, with TLS when `tls` is given.
pub async fn channel_tcp(
    addr: SocketAddr,
    tls: Option<&ClientTls>,
) -> Result<Channel, ClientError> {
    channel_address(&addr.to_string(), tls).await
}

/// A channel to `host:port` (a name or an address), with TLS when `tls` is given; the name is
/// what the agent's certificate must carry unless `tls.server_name` says otherwise.
pub async fn channel_address(
    address: &str,
    tls: Option<&ClientTls>,
) -> Result<Channel, ClientError> {
    let unreachable = |reason: String| ClientError::Unreachable {
        addr: address.to_owned(),
        reason,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|err| unreachable(err.to_string()))?;
    if let Some(tls) = tls {
        let read_pem = |path: &Path| {
            std::fs::read(path)
                .map_err(|err| unreachable(format!("cannot read {}: {err}", path.display())))
        };
        let mut config = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &tls.ca {
            config = config.ca_certificate(tonic::transport::Certificate::from_pem(read_pem(ca)?));
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            config = config.identity(tonic::transport::Identity::from_pem(
                read_pem(cert)?,
                read_pem(key)?,
            ));
        }
        if let Some(name) = &tls.server_name {
            config = config.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|err| unreachable(source_chain(&err)))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|err| unreachable(source_chain(&err)))
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
