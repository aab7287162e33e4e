use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, ConfigFile, SettingFlags};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// YAML settings file (the form a ConfigMap carries); flags override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check this settings file (and any flags given) the way `run` would, then exit: 0 when the
    /// agent accepts it, 2 naming the file, key and fix when not. Loads no programs and needs no
    /// privileges (the Helm chart's tests run it on every rendered ConfigMap).
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub check_config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingFlags,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, value_name = "FILTER", env = "FLOWD_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl RunArgs {
    /// Defaults, then the file, then flags; validated.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = self.config.as_ref().or(self.check_config.as_ref()) {
            config = ConfigFile::load(path)?.apply(config);
        }
        let config = self.settings.as_layer().apply(config);
        config.validate()?;
        Ok(config)
    }
}

/// `--check-config`: the verdict on stdout (valid) or stderr (not), with the file named even
/// when the fault is a value rather than the file's syntax.
fn check_config(args: &RunArgs, path: &std::path::Path) -> ExitCode {
    match args.resolve() {
        Ok(_) => {
            println!("{}: valid flowd settings", path.display());
            ExitCode::SUCCESS
        }
        Err(err @ (ConfigError::Read { .. } | ConfigError::Parse { .. })) => {
            eprintln!("flowd run --check-config: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!(
                "flowd run --check-config: config file {}: {err}",
                path.display()
            );
            ExitCode::from(2)
        }
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
    if let Some(path) = &args.check_config {
        return Ok(check_config(&args, path));
    }
    let config = args.resolve()?;
    init_logging(&args.log_level, args.log_format)?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    let listeners = crate::agent::AgentListeners::bind(&config).await?;
    crate::agent::run(config, listeners, shutdown, |_| {}).await?;
    Ok(ExitCode::SUCCESS)
}
