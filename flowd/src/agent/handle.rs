//! The agent running in this process: started, ready, stopped on request.

use std::path::PathBuf;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{AgentError, AgentListeners};
use crate::{
    api::client::{self, ClientError},
    config::{Config, ConfigError},
    proto::v1 as pb,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("the agent stopped before it was ready")]
    EndedEarly,
}

/// The agent running in this process, ready to serve, until `stop` or its shutdown signal.
pub struct RunningAgent {
    socket: PathBuf,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), AgentError>>,
}

impl RunningAgent {
    /// Validates `config`, binds its listeners, starts the agent and waits until it is ready.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        config.validate()?;
        let listeners = AgentListeners::bind(&config).await?;
        Self::start_on(config, listeners, CancellationToken::new()).await
    }

    /// Starts on listeners the caller bound; cancelling `shutdown` stops it like [`Self::stop`].
    pub async fn start_on(
        config: Config,
        listeners: AgentListeners,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let socket = config.socket.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(super::run(config, listeners, shutdown.clone(), move |_| {
            let _ = ready_tx.send(());
        }));
        if ready_rx.await.is_err() {
            // The agent ended before it was ready: its error says why.
            return Err(match task.await {
                Ok(Err(err)) => err.into(),
                Ok(Ok(())) => StartError::EndedEarly,
                Err(join) => AgentError::from(join).into(),
            });
        }
        Ok(Self {
            socket,
            shutdown,
            task,
        })
    }

    /// Every flow from now on, as the API streams them.
    pub async fn follow(&self) -> Result<tonic::Streaming<pb::GetFlowsResponse>, ClientError> {
        let mut client = client::connect_unix(&self.socket).await?;
        Ok(client
            .get_flows(pb::GetFlowsRequest {
                follow: true,
                ..Default::default()
            })
            .await
            .map_err(|status| ClientError::Refused(Box::new(status)))?
            .into_inner())
    }

    /// Waits until the agent has stopped (its shutdown signal fired) and flushed.
    pub async fn stopped(self) -> Result<(), AgentError> {
        self.task.await?
    }

    /// Stops the agent and waits for it to flush and exit.
    pub async fn stop(self) -> Result<(), AgentError> {
        self.shutdown.cancel();
        self.stopped().await
    }
}
