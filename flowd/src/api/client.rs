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
}

/// Connects over the agent's unix socket.
pub async fn connect_unix(socket: &Path) -> Result<FlowServiceClient<Channel>, ClientError> {
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
    Ok(FlowServiceClient::new(channel).max_decoding_message_size(64 << 20))
}

/// Connects over TCP (`--server`).
pub async fn connect_tcp(addr: SocketAddr) -> Result<FlowServiceClient<Channel>, ClientError> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|err| ClientError::Unreachable {
            addr: addr.to_string(),
            reason: err.to_string(),
        })?
        .connect()
        .await
        .map_err(|err| ClientError::Unreachable {
            addr: addr.to_string(),
            reason: source_chain(&err),
        })?;
    Ok(FlowServiceClient::new(channel))
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
