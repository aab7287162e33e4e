use std::path::PathBuf;

use crate::netns::NetnsError;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "loading the kernel programs was refused: {source}. flowd needs root, or CAP_BPF, \
         CAP_NET_ADMIN and CAP_PERFMON (CAP_SYS_ADMIN instead of the first and last before \
         Linux 5.8); in Kubernetes the chart grants them (value capabilities), or set \
         privileged: true"
    )]
    Permission { source: aya::EbpfError },
    #[error(
        "flowd lacks {missing}: it loads eBPF programs and attaches them to interfaces. Run it as \
         root (sudo flowd run), or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, and CAP_SYSLOG \
         to name drop locations (CAP_SYS_ADMIN instead of CAP_BPF and CAP_PERFMON before Linux \
         5.8); in Kubernetes the chart grants them (value capabilities), or set privileged: true"
    )]
    MissingCapabilities { missing: String },
    #[error("loading the kernel programs failed: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the kernel refused program {program}: {source}")]
    Verify {
        program: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error(
        "the kernel programs lack {0}: the agent and its eBPF object are out of step; rebuild"
    )]
    Missing(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("cannot attach to interface {interface} ({direction}): {source}")]
    Attach {
        interface: String,
        direction: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("cannot pin the link {path}: {error}; set pinPath: off to run without pinned state")]
    PinLink { path: PathBuf, error: String },
    #[error(transparent)]
    Pins(#[from] super::pins::PinError),
    #[error("interface {interface} not found{netns}; `ip link` lists the interfaces")]
    NoSuchInterface { interface: String, netns: String },
    #[error("no interface to attach to{0}: name one with --interface")]
    NoInterfaces(String),
    #[error("listing interfaces failed: {0}")]
    ListInterfaces(nix::Error),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("cannot follow interfaces (rtnetlink): {0}")]
    LinkWatch(std::io::Error),
    #[error("ring buffer: {0}")]
    RingBuffer(std::io::Error),
    #[error("network namespace {0} is not usable: {1}")]
    NetnsPath(PathBuf, String),
}

impl CaptureError {
    /// Splits permission problems from other load failures so the message names the fix.
    pub(crate) fn from_load(source: aya::EbpfError) -> Self {
        let text = format!("{source:?}");
        if text.contains("PermissionDenied") || text.contains("EPERM") {
            Self::Permission { source }
        } else {
            Self::Load(source)
        }
    }
}
