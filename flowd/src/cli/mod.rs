//! Command-line front end: each subcommand adapts library functions.

mod demo;
mod dump;
mod format;
mod health;
mod policy;
mod relay;
mod run;
mod status;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::{
    api::client, config::DEFAULT_SOCKET, proto::v1::flow_service_client::FlowServiceClient,
};

/// eBPF flow-log collector for Kubernetes nodes.
///
/// `flowd run` captures every flow on this node's interfaces; `flowd dump` and `flowd status`
/// ask the running agent.
#[derive(Debug, Parser)]
#[command(name = "flowd", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: load the kernel programs, attach them and serve flows over gRPC.
    Run(Box<run::RunArgs>),
    /// Print flows recorded by the local agent.
    Dump(Box<dump::DumpArgs>),
    /// Print the local agent's status: interfaces, counters, losses.
    Status(status::StatusArgs),
    /// Ask the agent's gRPC health service (what the Helm chart's probes run): exit 0 when it
    /// serves, 1 when it does not or does not answer in time.
    Health(health::HealthArgs),
    /// Show flowd working: two throwaway network namespaces, traffic between them, its flows.
    Demo(demo::DemoArgs),
    /// Serve the flows of many agents as one API (the whole cluster): merged in time order,
    /// `last` over all nodes, resumable with one token.
    Relay(Box<relay::RelayArgs>),
    /// Network policies: evaluate, check before applying, recommend, explain.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

/// Where to find the agent (shared by the client subcommands).
#[derive(Debug, Args)]
pub struct Target {
    /// The agent's unix socket.
    #[arg(long, value_name = "PATH", env = "FLOWD_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Reach the agent over TCP instead (its --listen address).
    #[arg(long, value_name = "ADDR")]
    pub server: Option<SocketAddr>,
    /// With --server: verify the agent's certificate against this CA (PEM); enables TLS.
    #[arg(long, value_name = "FILE", requires = "server")]
    pub tls_ca: Option<PathBuf>,
    /// With --server: present this client certificate (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["server", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// With --server: the client certificate's key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["server", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
    /// With --server: the name in the agent's certificate, if not the address.
    #[arg(long, value_name = "NAME", requires = "server")]
    pub tls_server_name: Option<String>,
}

impl Target {
    async fn connect(
        &self,
    ) -> Result<FlowServiceClient<tonic::transport::Channel>, client::ClientError> {
        Ok(client::flow_client(self.channel().await?))
    }

    async fn channel(&self) -> Result<tonic::transport::Channel, client::ClientError> {
        let tls = (self.tls_ca.is_some() || self.tls_cert.is_some()).then(|| client::ClientTls {
            ca: self.tls_ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            server_name: self.tls_server_name.clone(),
        });
        match self.server {
            Some(addr) => client::channel_tcp(addr, tls.as_ref()).await,
            None => client::channel_unix(&self.socket).await,
        }
    }
}

pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::execute(*args).await,
            Command::Dump(args) => dump::execute(*args).await,
            Command::Status(args) => status::execute(args).await,
            Command::Health(args) => health::execute(args).await,
            Command::Demo(args) => demo::execute(args).await,
            Command::Policy(command) => policy::execute(command).await,
            Command::Relay(args) => relay::execute(*args).await,
        }
    })
}
