//! flowd: an eBPF flow-log collector. The library holds the whole agent; the `flowd` binary's
//! subcommands are thin adapters over it (see ARCHITECTURE.md).

pub mod agent;
pub mod api;
pub mod attribution;
#[cfg(feature = "testing")]
pub mod browser;
pub mod capture;
pub mod cli;
pub mod config;
pub mod enrich;
pub mod export;
pub mod flow;
pub mod flow_metrics;
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
pub mod graph;
pub mod host;
#[cfg(feature = "testing")]
pub mod kafka_broker;
pub mod metrics;
pub mod model;
pub mod netns;
pub mod pipeline;
/// The policy engine, its own crate (`flowd-policy`).
pub use flowd_policy as policy;
pub mod proposal;
pub mod proto;
pub mod query;
pub mod relay;
pub mod store;
pub mod telemetry;
pub mod testbed;
pub mod ui;
