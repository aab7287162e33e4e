//! The agent's listeners, bound by the caller before the agent starts: a client that connects
//! after `bind` returns never races the agent, and a socket in use fails before anything is
//! attached.

use tokio::net::TcpListener;

use super::AgentError;
use crate::{
    api::{Listeners, TlsFiles},
    config::Config,
    metrics,
};

pub struct AgentListeners {
    /// The gRPC API: the unix socket, and the TCP listener when `listen` is set.
    pub api: Listeners,
    /// `/metrics`, when `metricsListen` is set.
    pub metrics: Option<TcpListener>,
    /// The web UI, when `uiListen` is set (with the API's TLS settings).
    pub ui: Option<Listeners>,
}

impl AgentListeners {
    /// Binds what `config` asks for.
    pub async fn bind(config: &Config) -> Result<Self, AgentError> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: config.tls_client_ca.clone(),
            }),
            _ => None,
        };
        let api = Listeners::bind(
            &config.socket,
            config.socket_group.as_deref(),
            config.listen,
            tls.as_ref(),
        )
        .await?;
        let ui = match config.ui_listen {
            Some(addr) => Some(crate::ui::bind(addr, tls.as_ref()).await?),
            None => None,
        };
        let metrics = match config.metrics_listen {
            Some(addr) => {
                let listener = metrics::bind(addr).await?;
                if let Ok(bound) = listener.local_addr() {
                    tracing::info!(addr = %bound, "metrics listening");
                }
                Some(listener)
            }
            None => None,
        };
        Ok(Self { api, metrics, ui })
    }
}
