use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigFile};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// YAML settings file (the form a ConfigMap carries); flags override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to attach to (repeatable). Default: every non-loopback interface.
    #[arg(long = "interface", short = 'i', value_name = "NAME")]
    pub interfaces: Vec<String>,
    /// Network namespace holding the interfaces: a name under /run/netns or a path.
    /// Default: the agent's own.
    #[arg(long, value_name = "NAME|PATH")]
    pub netns: Option<PathBuf>,
    /// Unix socket to serve the API on [default: /run/flowd/flowd.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Also serve the API on this TCP address, e.g. 127.0.0.1:4245.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Node name on every record [default: $NODE_NAME, else the host name].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Report a still-active flow at least this often [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub active_timeout: Option<Duration>,
    /// A flow without packets for this long is over [default: 15s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// How often the kernel flow map is scanned [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub sweep_interval: Option<Duration>,
    /// A request without any answer for this long is reported as unanswered [default: 3s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub unanswered_timeout: Option<Duration>,
    /// Capacity of the kernel flow map [default: 65536].
    #[arg(long, value_name = "N")]
    pub flow_map_entries: Option<u32>,
    /// Kernel ring buffer size in bytes, a power of two [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub ring_buffer_bytes: Option<u32>,
    /// The durable flow history file [default: /var/lib/flowd/flows.redb].
    #[arg(long, value_name = "PATH")]
    pub store_path: Option<PathBuf>,
    /// Delete history older than this [default: 24h].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retention_max_age: Option<Duration>,
    /// Delete the oldest history beyond this many bytes of records [default: 1073741824].
    #[arg(long, value_name = "BYTES")]
    pub retention_max_bytes: Option<u64>,
    /// TLS certificate (PEM) for the --listen address.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the --listen address.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require TCP clients to present a certificate signed by this CA (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Records a follower may fall behind before it is told it lost some [default: 16384].
    #[arg(long, value_name = "N")]
    pub subscriber_buffer: Option<usize>,
    /// How the tc programs attach: auto (tcx on kernels >= 6.6, else clsact), tcx or clsact
    /// [default: auto].
    #[arg(long, value_enum, value_name = "HOW")]
    pub tc_attach: Option<crate::capture::TcAttach>,
    /// The kernel-drop probe: auto (tp_btf with kernel BTF, else the classic tracepoint), btf,
    /// tracepoint or off [default: auto].
    #[arg(long, value_enum, value_name = "PROBE")]
    pub drop_probe: Option<crate::capture::DropProbeMode>,
    /// Aggregation before storing: connection, source-port or workload [default: connection].
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub aggregation: Option<crate::flow::aggregate::Level>,
    /// Flush interval of the source-port and workload levels [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub aggregation_interval: Option<Duration>,
    /// Kubernetes objects naming flow endpoints: a file or directory of Pod, Namespace, Service,
    /// EndpointSlice and Node objects in YAML or JSON (repeatable).
    #[arg(long = "metadata-file", value_name = "PATH")]
    pub metadata_files: Vec<PathBuf>,
    /// Watch the Kubernetes API for pods, namespaces, services, EndpointSlices and nodes
    /// (in-cluster config in a pod, KUBECONFIG or ~/.kube/config elsewhere).
    #[arg(long)]
    pub kubernetes: bool,
    /// Kubernetes NetworkPolicy and Calico (Global)NetworkPolicy, Tier and staged objects
    /// (file or directory, repeatable): every flow names the policy and rule that decide it.
    #[arg(long = "policy-file", value_name = "PATH")]
    pub policy_files: Vec<PathBuf>,
    /// Serve Prometheus metrics on this address, e.g. 0.0.0.0:9810 [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Also write every record as a JSON line to this file, rotated by size.
    #[arg(long, value_name = "PATH")]
    pub export_file: Option<PathBuf>,
    /// Rotate the export file at this size [default: 104857600].
    #[arg(long, value_name = "BYTES")]
    pub export_file_max_bytes: Option<u64>,
    /// Rotated export files kept [default: 5].
    #[arg(long, value_name = "N")]
    pub export_file_max_files: Option<usize>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, value_name = "FILTER", env = "FLOWD_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl RunArgs {
    /// Defaults, then the file, then flags; validated.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut config = Config::default();
        if let Some(path) = &self.config {
            config = ConfigFile::load(path)?.apply(config);
        }
        let flags = ConfigFile {
            interfaces: (!self.interfaces.is_empty()).then(|| self.interfaces.clone()),
            netns: self.netns.clone(),
            tc_attach: self.tc_attach,
            drop_probe: self.drop_probe,
            socket: self.socket.clone(),
            listen: self.listen,
            node: self.node.clone(),
            active_timeout: self.active_timeout,
            idle_timeout: self.idle_timeout,
            sweep_interval: self.sweep_interval,
            unanswered_timeout: self.unanswered_timeout,
            flow_map_entries: self.flow_map_entries,
            ring_buffer_bytes: self.ring_buffer_bytes,
            store_path: self.store_path.clone(),
            retention_max_age: self.retention_max_age,
            retention_max_bytes: self.retention_max_bytes,
            store_cache_bytes: None,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: self.tls_client_ca.clone(),
            subscriber_buffer: self.subscriber_buffer,
            pipeline_buffer: None,
            aggregation: self.aggregation,
            aggregation_interval: self.aggregation_interval,
            metadata_files: (!self.metadata_files.is_empty()).then(|| self.metadata_files.clone()),
            metadata_reload_interval: None,
            kubernetes: self.kubernetes.then_some(true),
            policy_files: (!self.policy_files.is_empty()).then(|| self.policy_files.clone()),
            metrics_listen: self.metrics_listen,
            export_file: self.export_file.clone(),
            export_file_max_bytes: self.export_file_max_bytes,
            export_file_max_files: self.export_file_max_files,
        };
        let config = flags.apply(config);
        config.validate()?;
        Ok(config)
    }
}

pub fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log-level filter {filter:?}"))?;
    use std::io::IsTerminal as _;
    // Colour codes only on a terminal: a log shipper reading a pipe wants plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|err| anyhow::anyhow!("cannot set up logging: {err}"))
}

/// Cancels the token on Ctrl-C or SIGTERM (what Kubernetes sends on pod deletion).
pub fn cancel_on_signal(token: CancellationToken) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; detaching and flushing"),
            _ = terminate.recv() => tracing::info!("SIGTERM; detaching and flushing"),
        }
        token.cancel();
    });
    Ok(())
}

pub async fn execute(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.resolve()?;
    init_logging(&args.log_level, args.log_format)?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    let listeners = crate::agent::AgentListeners::bind(&config).await?;
    crate::agent::run(config, listeners, shutdown, |_| {}).await?;
    Ok(ExitCode::SUCCESS)
}
