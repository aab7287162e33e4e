//! The workload graph: stored flows of a window folded into nodes (workloads, hosts, services,
//! outside addresses) and edges (who started traffic to whom, over which protocol), with the
//! policy decisions behind them and a board of every loaded policy. The agent builds one from
//! its history; the relay merges its nodes' graphs. Both serve it as GetGraph and to the web UI.
//!
//! Counting: `connections` sums the records' own connection counts and `flows` counts records.
//! A connection recorded at two observation points of a node (a pod's veth and the uplink) is
//! in two records and counts on each; an `interface` filter picks one point.

mod build;
mod history;
mod identity;
mod merge;
mod policies;
mod ports;
pub mod summary;
mod top;

pub use build::GraphBuilder;
pub use history::from_history;
pub use merge::merge;
pub use policies::LoadedPolicy;

/// The id of the graph node `endpoint` belongs to (as GraphNode.id), `recorded_on` naming the
/// host when the endpoint does not.
pub fn node_id(endpoint: &crate::proto::v1::Endpoint, recorded_on: &str) -> String {
    identity::Identity::of(endpoint, recorded_on).node().id
}

/// Edges kept when a request does not say (`graphMaxEdges`).
pub const DEFAULT_MAX_EDGES: usize = 2000;
/// The window a request without `since` covers.
pub const DEFAULT_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);
/// Pod names listed per graph node; `pod_count` counts them all.
pub const LISTED_PODS: usize = 20;

#[cfg(test)]
mod tests;
