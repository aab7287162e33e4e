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

/// Answers only requests that name the loopback address or `localhost`: another site's page
/// whose name a DNS server points at 127.0.0.1 (DNS rebinding) would otherwise read the flows
/// as if it were this page. With TLS the certificate's name does that check.
fn only_local_names(router: Router, local: std::net::SocketAddr) -> Router {
    let port = local.port();
    let allowed: std::sync::Arc<std::collections::HashSet<String>> = std::sync::Arc::new(
        [
            local.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ]
        .into(),
    );
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let allowed = allowed.clone();
            async move {
                let host = request
                    .headers()
                    .get(axum::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
                    .or_else(|| request.uri().authority().map(|a| a.to_string()));
                match host {
                    Some(host) if allowed.contains(&host) => next.run(request).await,
                    _ => {
                        use axum::response::IntoResponse as _;
                        (
                            axum::http::StatusCode::MISDIRECTED_REQUEST,
                            "this UI answers to its loopback address and localhost only \
                             (a page on another name could be DNS rebinding); open \
                             http://localhost:PORT/",
                        )
                            .into_response()
                    }
                }
            }
        },
    ))
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
    let router = match listener.local_addr() {
        Ok(local) if tls.is_none() && local.ip().is_loopback() => only_local_names(router, local),
        _ => router,
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
