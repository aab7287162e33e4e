//! Agent settings: defaults, an optional YAML file (the form a ConfigMap carries), then flags.
//!
//! Flags win over the file, the file over defaults. Every value is validated once here, so the
//! pipeline never meets a nonsense setting at run time.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::flow::aggregate::Level;

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
        key: &'static str,
        value: String,
        expected: String,
    },
}

/// The agent's settings, complete and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Interfaces to attach to; empty means every non-loopback interface of the namespace.
    pub interfaces: Vec<String>,
    /// Network namespace to attach in (a path such as /run/netns/NAME, or a name under
    /// /run/netns); `None` means the agent's own.
    pub netns: Option<PathBuf>,
    /// tcx or clsact; `auto` picks tcx where the kernel has it.
    pub tc_attach: crate::capture::TcAttach,
    /// tp_btf or the classic tracepoint for kernel drops; `auto` picks tp_btf where BTF exists.
    pub drop_probe: crate::capture::DropProbeMode,
    pub socket: PathBuf,
    pub listen: Option<SocketAddr>,
    /// Node name put on every record.
    pub node: String,
    pub active_timeout: Duration,
    pub idle_timeout: Duration,
    /// How often the kernel flow map is scanned for records to emit.
    pub sweep_interval: Duration,
    /// A request without any answer for this long is reported as unanswered.
    pub unanswered_timeout: Duration,
    pub flow_map_entries: u32,
    pub ring_buffer_bytes: u32,
    /// The durable flow history (redb file).
    pub store_path: PathBuf,
    /// History older than this is deleted.
    pub retention_max_age: Duration,
    /// History beyond this many bytes of records is deleted, oldest first.
    pub retention_max_bytes: u64,
    /// Page cache of the history database.
    pub store_cache_bytes: usize,
    /// TLS for the TCP listener: certificate and key (PEM).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    pub tls_client_ca: Option<PathBuf>,
    /// Records a follower may fall behind before it gets a gap marker.
    pub subscriber_buffer: usize,
    /// Capacity of the bounded channels between pipeline stages.
    pub pipeline_buffer: usize,
    /// How records are aggregated before they are stored.
    pub aggregation: Level,
    /// Flush interval of the folding aggregation levels.
    pub aggregation_interval: Duration,
    /// Kubernetes objects (Pod, Namespace, Service, EndpointSlice, Node) naming flow endpoints:
    /// files or directories, as `kubectl get -o yaml` prints them.
    pub metadata_files: Vec<PathBuf>,
    /// How often metadata files are checked for changes (and, with `kubernetes`, how often the
    /// index is rebuilt when watched objects changed).
    pub metadata_reload_interval: Duration,
    /// Watch the Kubernetes API (in-cluster config in a pod, the kubeconfig elsewhere) for pods,
    /// namespaces, services, EndpointSlices and nodes.
    pub kubernetes: bool,
    /// Kubernetes and Calico policies (files or directories) to attribute every flow to the
    /// policy and rule that decide it.
    pub policy_files: Vec<PathBuf>,
    /// Serve Prometheus metrics on this address (`/metrics`); off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Also write every record as a JSON line to this file, rotated by size.
    pub export_file: Option<PathBuf>,
    pub export_file_max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub export_file_max_files: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            netns: None,
            tc_attach: crate::capture::TcAttach::Auto,
            drop_probe: crate::capture::DropProbeMode::Auto,
            socket: PathBuf::from(DEFAULT_SOCKET),
            listen: None,
            node: default_node_name(),
            active_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            sweep_interval: Duration::from_secs(1),
            unanswered_timeout: Duration::from_secs(3),
            flow_map_entries: 65_536,
            ring_buffer_bytes: 1 << 20,
            store_path: PathBuf::from(DEFAULT_STORE),
            retention_max_age: Duration::from_secs(24 * 3600),
            retention_max_bytes: 1 << 30,
            store_cache_bytes: 32 << 20,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            subscriber_buffer: 16_384,
            pipeline_buffer: 8_192,
            aggregation: Level::Connection,
            aggregation_interval: Duration::from_secs(60),
            metadata_files: Vec::new(),
            metadata_reload_interval: Duration::from_secs(10),
            kubernetes: false,
            policy_files: Vec::new(),
            metrics_listen: None,
            export_file: None,
            export_file_max_bytes: 100 << 20,
            export_file_max_files: 5,
        }
    }
}

fn default_node_name() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| nix::unistd::gethostname().ok()?.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The file's shape. Every key is optional; unknown keys are refused so a typo is not ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    pub interfaces: Option<Vec<String>>,
    pub netns: Option<PathBuf>,
    pub tc_attach: Option<crate::capture::TcAttach>,
    pub drop_probe: Option<crate::capture::DropProbeMode>,
    pub socket: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub node: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub active_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub sweep_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub unanswered_timeout: Option<Duration>,
    pub flow_map_entries: Option<u32>,
    pub ring_buffer_bytes: Option<u32>,
    pub store_path: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub retention_max_age: Option<Duration>,
    pub retention_max_bytes: Option<u64>,
    pub store_cache_bytes: Option<usize>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub subscriber_buffer: Option<usize>,
    pub pipeline_buffer: Option<usize>,
    pub aggregation: Option<Level>,
    #[serde(default, with = "humantime_serde")]
    pub aggregation_interval: Option<Duration>,
    pub metadata_files: Option<Vec<PathBuf>>,
    #[serde(default, with = "humantime_serde")]
    pub metadata_reload_interval: Option<Duration>,
    pub kubernetes: Option<bool>,
    pub policy_files: Option<Vec<PathBuf>>,
    pub metrics_listen: Option<SocketAddr>,
    pub export_file: Option<PathBuf>,
    pub export_file_max_bytes: Option<u64>,
    pub export_file_max_files: Option<usize>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        // An empty file (or one holding only comments) is a valid "all defaults".
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Self::default());
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

    /// Lays `self` over `base`: every key present in the file replaces the base value.
    pub fn apply(self, mut base: Config) -> Config {
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { base.$field = v; } )* };
        }
        take!(
            interfaces,
            tc_attach,
            drop_probe,
            socket,
            node,
            active_timeout,
            idle_timeout,
            sweep_interval,
            unanswered_timeout,
            flow_map_entries,
            ring_buffer_bytes,
            store_path,
            retention_max_age,
            retention_max_bytes,
            store_cache_bytes,
            subscriber_buffer,
            pipeline_buffer,
            aggregation,
            aggregation_interval,
            export_file_max_bytes,
            export_file_max_files,
            metadata_files,
            metadata_reload_interval,
            kubernetes,
            policy_files
        );
        // Optional settings: a key in the file sets them, its absence keeps the base.
        macro_rules! take_some {
            ($($field:ident),*) => { $( if self.$field.is_some() { base.$field = self.$field; } )* };
        }
        take_some!(
            metrics_listen,
            export_file,
            netns,
            listen,
            tls_cert,
            tls_key,
            tls_client_ca
        );
        base
    }
}

impl Config {
    /// Refuses values the pipeline cannot honour, naming the setting and what it accepts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, value: String, expected: &str| ConfigError::Invalid {
            key,
            value,
            expected: expected.to_owned(),
        };
        let page = page_size();
        if !self.ring_buffer_bytes.is_power_of_two() || self.ring_buffer_bytes < page {
            return Err(invalid(
                "ringBufferBytes",
                self.ring_buffer_bytes.to_string(),
                &format!("a power of two of at least the page size ({page}), e.g. 1048576"),
            ));
        }
        if self.flow_map_entries == 0 {
            return Err(invalid(
                "flowMapEntries",
                "0".into(),
                "at least 1, e.g. 65536",
            ));
        }
        for (key, value) in [
            ("activeTimeout", self.active_timeout),
            ("idleTimeout", self.idle_timeout),
            ("sweepInterval", self.sweep_interval),
            ("unansweredTimeout", self.unanswered_timeout),
            ("retentionMaxAge", self.retention_max_age),
            ("aggregationInterval", self.aggregation_interval),
            ("metadataReloadInterval", self.metadata_reload_interval),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "0s".into(), "a positive duration such as 5s"));
            }
        }
        if self.sweep_interval > self.active_timeout {
            return Err(invalid(
                "sweepInterval",
                humantime::format_duration(self.sweep_interval).to_string(),
                "at most activeTimeout, or records arrive later than promised",
            ));
        }
        for (key, value) in [
            ("subscriberBuffer", self.subscriber_buffer),
            ("pipelineBuffer", self.pipeline_buffer),
        ] {
            if value == 0 {
                return Err(invalid(key, "0".into(), "at least 1"));
            }
        }
        if self
            .interfaces
            .iter()
            .any(|name| name.is_empty() || name.len() > 15)
        {
            return Err(invalid(
                "interfaces",
                format!("{:?}", self.interfaces),
                "interface names of 1 to 15 characters",
            ));
        }
        Ok(())
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

fn page_size() -> u32 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|size| u32::try_from(size).ok())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests;
