//! Agent settings: defaults, an optional YAML file (the form a ConfigMap carries), then flags.
//!
//! Flags win over the file, the file over defaults. Every value is validated once here, so the
//! pipeline never meets a nonsense setting at run time.

use std::path::{Path, PathBuf};

#[macro_use]
mod declare;
mod checks;
mod flow_filter;
mod settings;
pub mod table;

pub use checks::HumanDuration;
pub use flow_filter::{flow_filters, FlowFilterSetting};
pub use settings::{Config, ConfigFile, SettingFlags, SETTINGS};
pub use table::Setting;

/// Where the agent listens by default; `flowd dump` and `flowd status` look here too.
pub const DEFAULT_SOCKET: &str = "/run/flowd/flowd.sock";
/// Where the durable history lives by default (a hostPath volume in Kubernetes).
pub const DEFAULT_STORE: &str = "/var/lib/flowd/flows.redb";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: key `{key}`: {message}")]
    Parse {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("setting `{key}` = {value}: {expected}")]
    Invalid {
        key: String,
        value: String,
        expected: String,
    },
}

pub(crate) fn default_node_name() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| nix::unistd::gethostname().ok()?.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        load_yaml(path)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        parse_yaml(path, text)
    }
}

/// Reads a YAML settings file (the agent's, the relay's) into `T`.
pub fn load_yaml<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_yaml(path, &text)
}

/// Parses YAML settings, naming the key a bad value sits at.
pub fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    // An empty file (or one holding only comments) is a valid "all defaults".
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(T::default());
    }
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let message = err.inner().to_string();
        ConfigError::Parse {
            path: path.to_owned(),
            key: if key == "." {
                "(top level)".to_owned()
            } else {
                key
            },
            message,
        }
    })
}

impl Config {
    /// Refuses values the pipeline cannot honour, naming the setting and what it accepts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_each()?;
        if self.sweep_interval > self.active_timeout {
            return Err(checks::Rejected::new(
                humantime::format_duration(self.sweep_interval).to_string(),
                "at most activeTimeout, or records arrive later than promised",
            )
            .of("sweep_interval"));
        }
        // A certificate without its key (or the reverse) would otherwise mean plaintext.
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let (given, missing) = if self.tls_cert.is_some() {
                ("tls_cert", "tlsKey")
            } else {
                ("tls_key", "tlsCert")
            };
            return Err(checks::Rejected::new(
                "a file without its pair",
                format!("{missing} as well: TLS needs both the certificate and its key"),
            )
            .of(given));
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(checks::Rejected::new(
                "a CA without a server certificate",
                "tlsCert and tlsKey as well: client certificates are checked only over TLS",
            )
            .of("tls_client_ca"));
        }
        if let Some(off) = self
            .flow_metric_labels
            .iter()
            .find(|l| !self.flow_metrics.contains(&l.metric))
        {
            return Err(checks::Rejected::new(
                off.metric.as_str(),
                "a metric that flowMetrics turns on (add it there, or drop its labels)",
            )
            .of("flow_metric_labels"));
        }
        self.check_exposure()
    }

    /// Nothing listens beyond loopback without TLS and client certificates unless the user said
    /// so (`insecureListen`).
    fn check_exposure(&self) -> Result<(), ConfigError> {
        if let Some(listen) = self
            .listen
            .filter(|addr| !addr.ip().is_loopback() && !self.insecure_listen)
        {
            if self.tls_cert.is_none() || self.tls_client_ca.is_none() {
                return Err(checks::Rejected::new(
                    listen.to_string(),
                    "a loopback address, or tlsCert, tlsKey and tlsClientCa so that only \
                     clients with a certificate from that CA read the flows (insecureListen: \
                     true serves them in plaintext to anyone who reaches the port)",
                )
                .of("listen"));
            }
        }
        if let Some(ui) = self
            .ui_listen
            .filter(|addr| !addr.ip().is_loopback() && !self.insecure_ui)
        {
            if self.tls_cert.is_none() || self.tls_client_ca.is_none() {
                return Err(checks::Rejected::new(
                    ui.to_string(),
                    "a loopback address, or tlsCert, tlsKey and tlsClientCa so that only \
                     browsers with a client certificate from that CA see the flows \
                     (insecureUi: true serves them in plaintext to anyone who reaches the port)",
                )
                .of("ui_listen"));
            }
        }
        // Its own switch: saying yes to plain-HTTP counters (for a Prometheus scrape) must not
        // also say yes to a plaintext flow API.
        if let Some(metrics) = self
            .metrics_listen
            .filter(|addr| !addr.ip().is_loopback() && !self.insecure_metrics)
        {
            return Err(checks::Rejected::new(
                metrics.to_string(),
                "a loopback address (metrics are plain HTTP; insecureMetrics: true serves them \
                 beyond loopback to anyone who reaches the port)",
            )
            .of("metrics_listen"));
        }
        Ok(())
    }

    /// What the flow metrics stage counts.
    pub fn flow_metric_settings(&self) -> crate::flow_metrics::FlowMetricSettings {
        crate::flow_metrics::FlowMetricSettings {
            metrics: self.flow_metrics.clone(),
            labels: self.flow_metric_labels.clone(),
            max_series: self.flow_metric_max_series,
        }
    }

    /// Where maps and links are pinned, unless `pinPath` is `off`.
    pub fn pin_dir(&self) -> Option<&Path> {
        (self.pin_path != Path::new("off")).then_some(self.pin_path.as_path())
    }

    /// The namespace path to attach in, resolving a bare name under /run/netns.
    pub fn netns_path(&self) -> Option<PathBuf> {
        self.netns.as_ref().map(|netns| {
            if netns.components().count() == 1 && !netns.is_absolute() {
                Path::new("/run/netns").join(netns)
            } else {
                netns.clone()
            }
        })
    }
}

#[cfg(test)]
mod tests;
