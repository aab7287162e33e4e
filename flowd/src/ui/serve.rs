//! The UI's HTTP server: tonic's, so the listener, TLS and client-certificate checks are the
//! API's own; HTTP/1.1 is accepted for browsers on plain loopback.

use std::sync::Arc;

use axum::{
    routing::{get, post},
    Router,
};
use tokio_util::sync::CancellationToken;

use super::{assets, json};
use crate::{
    api::{ApiError, Listeners},
    proto::v1::flow_service_server::FlowService,
};

/// The page and its JSON over `service`.
pub fn router<S: FlowService>(service: Arc<S>) -> Router {
    let mut router = Router::new()
        .route("/api/v1/graph", post(json::graph::<S>))
        .route("/api/v1/flows", post(json::flows::<S>))
        .route("/api/v1/recommend", post(json::recommend::<S>))
        .route("/api/v1/status", get(json::status::<S>))
        .with_state(service);
    for asset in assets::ASSETS {
        router = router.route(asset.path, get(move || async move { assets::file(asset) }));
    }
    router.layer(axum::middleware::map_response(|response| async move {
        assets::harden(response)
    }))
}

/// Binds the UI's listener (TLS checked at once, as the API's) and logs its URL.
pub async fn bind(
    addr: std::net::SocketAddr,
    tls: Option<&crate::api::TlsFiles>,
) -> Result<Listeners, ApiError> {
    let listeners = Listeners::bind_tcp(addr, tls).await?;
    if let Some(bound) = listeners.tcp_addr() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(url = %format!("{scheme}://{bound}/"), "UI listening");
    }
    Ok(listeners)
}

/// Serves `router` on the TCP listener of `listeners` until `shutdown`.
pub async fn serve(
    router: Router,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let Some((listener, tls)) = listeners.into_tcp() else {
        return Ok(());
    };
    let mut builder = tonic::transport::Server::builder().accept_http1(true);
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|err| ApiError::Tls(err.to_string()))?;
    }
    builder
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await?;
    Ok(())
}
