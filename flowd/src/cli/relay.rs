//! `flowd relay`: serve the cluster's flows from the agents it reaches. Settings come from
//! flags or a YAML file with the same names in camelCase (flags win).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::bail;
use clap::Args;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::run::{cancel_on_signal, init_logging, LogFormat};
use crate::{
    api::{client::ClientTls, ApiLimits, Listeners, TlsFiles},
    relay::{
        discovery::{self, ServiceDiscovery},
        PassThrough, PeerSet, PeerTarget, PeerTiming, RelayOptions, RelayService,
    },
};

/// Where the relay listens unless told: loopback, so nothing is exposed without TLS.
const DEFAULT_LISTEN: &str = "127.0.0.1:4246";

#[derive(Debug, Default, Args, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RelayArgs {
    /// YAML settings file with the keys below in camelCase (peers: [host:port, ...]); flags
    /// override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// An agent to read, as host:port of its `listen` address; repeat for every node.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Find the agents from the EndpointSlices of this headless Service instead (in a pod
    /// the service account is used; elsewhere KUBECONFIG).
    #[arg(long, value_name = "NAMESPACE/NAME", conflicts_with = "peers")]
    pub kubernetes_service: Option<String>,
    /// The Service's port that carries the agents' API [default: grpc].
    #[arg(long, value_name = "NAME")]
    pub kubernetes_port_name: Option<String>,
    /// Serve the cluster's API here [default: 127.0.0.1:4246]; beyond loopback it needs
    /// --tls-cert, --tls-key and --tls-client-ca (or --insecure-listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The relay's certificate (PEM) for consumers.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require consumers' client certificates signed by this CA (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve beyond loopback without TLS and client certificates: anyone who reaches the port
    /// reads every node's flows.
    #[arg(long)]
    pub insecure_listen: bool,
    /// Serve the web UI (the cluster's graph, flows and policies) here; beyond loopback it
    /// needs --tls-cert, --tls-key and --tls-client-ca (or --insecure-ui).
    #[arg(long, value_name = "ADDR")]
    pub ui_listen: Option<SocketAddr>,
    /// Serve the UI beyond loopback without TLS and client certificates: anyone who reaches the
    /// port sees every node's flows.
    #[arg(long)]
    pub insecure_ui: bool,
    /// Verify the agents' certificates against this CA (PEM); enables TLS towards them.
    #[arg(long, value_name = "FILE")]
    pub peer_tls_ca: Option<PathBuf>,
    /// The relay's client certificate (PEM) towards the agents.
    #[arg(long, value_name = "FILE")]
    pub peer_tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub peer_tls_key: Option<PathBuf>,
    /// The name the agents' certificates carry, when it is not the peer's host.
    #[arg(long, value_name = "NAME")]
    pub peer_tls_server_name: Option<String>,
    /// How long a node may take to answer before it is reported unavailable [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// How long a node may take to answer GetGraph (it reads its whole window) [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub query_timeout: Option<Duration>,
    /// Longest wait between reconnection attempts to an unavailable node [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub retry_max: Option<Duration>,
    /// Records one node may queue for the merge before its stream waits [default: 256].
    #[arg(long, value_name = "N")]
    pub peer_buffer: Option<usize>,
    /// How often a Checkpoint (resume token) goes out while records flow [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Option<Duration>,
    /// GetFlows calls open at once [default: 256].
    #[arg(long, value_name = "N")]
    pub max_subscribers: Option<usize>,
    /// The relay's name in GetStatus [default: relay].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, value_name = "FILTER", env = "FLOWD_LOG", default_value = "info")]
    #[serde(skip)]
    pub log_level: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    #[serde(skip)]
    pub log_format: LogFormat,
}

impl RelayArgs {
    /// The file's settings under the flags'.
    fn over(self, file: Self) -> Self {
        Self {
            config: self.config,
            peers: if self.peers.is_empty() {
                file.peers
            } else {
                self.peers
            },
            kubernetes_service: self.kubernetes_service.or(file.kubernetes_service),
            kubernetes_port_name: self.kubernetes_port_name.or(file.kubernetes_port_name),
            listen: self.listen.or(file.listen),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_client_ca: self.tls_client_ca.or(file.tls_client_ca),
            insecure_listen: self.insecure_listen || file.insecure_listen,
            ui_listen: self.ui_listen.or(file.ui_listen),
            insecure_ui: self.insecure_ui || file.insecure_ui,
            peer_tls_ca: self.peer_tls_ca.or(file.peer_tls_ca),
            peer_tls_cert: self.peer_tls_cert.or(file.peer_tls_cert),
            peer_tls_key: self.peer_tls_key.or(file.peer_tls_key),
            peer_tls_server_name: self.peer_tls_server_name.or(file.peer_tls_server_name),
            connect_timeout: self.connect_timeout.or(file.connect_timeout),
            query_timeout: self.query_timeout.or(file.query_timeout),
            retry_max: self.retry_max.or(file.retry_max),
            peer_buffer: self.peer_buffer.or(file.peer_buffer),
            checkpoint_interval: self.checkpoint_interval.or(file.checkpoint_interval),
            max_subscribers: self.max_subscribers.or(file.max_subscribers),
            name: self.name.or(file.name),
            log_level: self.log_level,
            log_format: self.log_format,
        }
    }
}

fn load(args: RelayArgs) -> anyhow::Result<RelayArgs> {
    let Some(path) = args.config.clone() else {
        return Ok(args);
    };
    let file: RelayArgs = crate::config::load_yaml(&path)?;
    Ok(args.over(file))
}

/// The options the relay runs with, or what is wrong with the settings and how to fix it.
pub fn options(
    args: &RelayArgs,
    peers: PeerSet,
) -> anyhow::Result<(RelayOptions, SocketAddr, Option<TlsFiles>)> {
    let listen = match args.listen {
        Some(addr) => addr,
        None => DEFAULT_LISTEN.parse()?,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.tls_client_ca.clone(),
        }),
        (None, None) if args.tls_client_ca.is_none() => None,
        _ => bail!("--tls-cert and --tls-key go together (and --tls-client-ca needs both)"),
    };
    let authenticated = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    refuse_exposed(
        "--listen",
        listen,
        authenticated,
        args.insecure_listen,
        "--insecure-listen",
    )?;
    if let Some(ui) = args.ui_listen {
        refuse_exposed(
            "--ui-listen",
            ui,
            authenticated,
            args.insecure_ui,
            "--insecure-ui",
        )?;
    }
    let defaults = PeerTiming::default();
    let timing = PeerTiming {
        connect_timeout: args.connect_timeout.unwrap_or(defaults.connect_timeout),
        query_timeout: args.query_timeout.unwrap_or(defaults.query_timeout),
        retry_min: defaults.retry_min,
        retry_max: args.retry_max.unwrap_or(defaults.retry_max),
    };
    let limits = ApiLimits {
        max_subscribers: args
            .max_subscribers
            .unwrap_or(crate::api::DEFAULT_MAX_SUBSCRIBERS),
        ..ApiLimits::default()
    };
    let options = RelayOptions {
        name: args.name.clone().unwrap_or_else(|| "relay".to_owned()),
        peers,
        timing,
        peer_buffer: args.peer_buffer.unwrap_or(256).max(1),
        checkpoint_interval: args
            .checkpoint_interval
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(10)),
        limits,
    };
    Ok((options, listen, tls))
}

/// Beyond loopback only with client certificates, or when the user said plaintext is fine.
fn refuse_exposed(
    flag: &str,
    addr: SocketAddr,
    authenticated: bool,
    insecure: bool,
    insecure_flag: &str,
) -> anyhow::Result<()> {
    if addr.ip().is_loopback() || authenticated || insecure {
        return Ok(());
    }
    bail!(
        "{flag} {addr} is beyond loopback: give --tls-cert, --tls-key and --tls-client-ca so \
         that only clients with a certificate from that CA read the cluster's flows, or \
         {insecure_flag} to serve them in plaintext to anyone who reaches the port"
    )
}

fn peer_tls(args: &RelayArgs) -> Option<ClientTls> {
    (args.peer_tls_ca.is_some() || args.peer_tls_cert.is_some()).then(|| ClientTls {
        ca: args.peer_tls_ca.clone(),
        cert: args.peer_tls_cert.clone(),
        key: args.peer_tls_key.clone(),
        server_name: args.peer_tls_server_name.clone(),
    })
}

/// The agents: the --peer list, or the Service's EndpointSlices followed until `stop`.
async fn peers(args: &RelayArgs, stop: CancellationToken) -> anyhow::Result<PeerSet> {
    let tls = peer_tls(args);
    if let Some(service) = &args.kubernetes_service {
        let Some((namespace, name)) = service.split_once('/') else {
            bail!(
                "--kubernetes-service {service}: expected NAMESPACE/NAME, e.g. flowd/flowd-agents"
            );
        };
        let client = crate::enrich::kubernetes::client().await?;
        return Ok(discovery::follow_service(
            client,
            ServiceDiscovery {
                namespace: namespace.to_owned(),
                service: name.to_owned(),
                port_name: args
                    .kubernetes_port_name
                    .clone()
                    .unwrap_or_else(|| "grpc".to_owned()),
                tls,
            },
            stop,
        ));
    }
    if args.peers.is_empty() {
        bail!(
            "flowd relay needs its agents: --peer HOST:PORT (an agent's listen address, once per \
             node) or --kubernetes-service NAMESPACE/NAME (the agents' headless Service)"
        );
    }
    Ok(PeerSet::fixed(
        args.peers
            .iter()
            .map(|address| PeerTarget {
                address: address.clone(),
                tls: tls.clone(),
            })
            .collect(),
    ))
}

pub async fn execute(args: RelayArgs) -> anyhow::Result<ExitCode> {
    let args = load(args)?;
    init_logging(&args.log_level, args.log_format)?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    let peers = peers(&args, shutdown.clone()).await?;
    let (options, listen, tls) = options(&args, peers)?;
    let listeners = Listeners::bind_tcp(listen, tls.as_ref()).await?;
    let bound = listeners.tcp_addr().unwrap_or(listen);
    let limits = options.limits;
    let peer_count = options.peers.current().len();
    let service = RelayService::new(options);
    let ui = match args.ui_listen {
        Some(addr) => {
            let ui = crate::ui::bind(addr, tls.as_ref()).await?;
            let router = crate::ui::router(std::sync::Arc::new(service.clone()));
            Some(tokio::spawn(crate::ui::serve(router, ui, shutdown.clone())))
        }
        None => None,
    };
    tracing::info!(listen = %bound, peers = peer_count, "flowd relay ready");
    crate::api::serve_service(
        PassThrough::new(service, limits.max_request_bytes),
        limits,
        listeners,
        shutdown,
    )
    .await?;
    if let Some(ui) = ui {
        ui.await??;
    }
    Ok(ExitCode::SUCCESS)
}
