//! `flowd relay`: the agents' API for the whole cluster. Each call streams every node with the
//! query pushed down, merges the streams in time order (a record goes out once every streaming
//! node's next record or watermark is later), applies `last` to the merged result, and gives
//! the consumer a cluster position (a per-node cursor vector as one token) to resume from. The
//! relay keeps no history: the nodes' durable histories are the buffer, so a node that was
//! away, or a consumer that fell behind, is caught up from them.

mod last;
mod merge;
mod peer;
mod position;
mod service;
mod stream;

use std::time::Duration;

pub use merge::{Lane, MergeOrder, Merger};
pub use peer::{PeerTarget, PeerTiming};
pub use position::{Position, PositionError};
pub use service::RelayService;

use crate::api::ApiLimits;

/// What a relay serves and how it treats its nodes.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// The name GetStatus gives the relay itself.
    pub name: String,
    pub peers: Vec<PeerTarget>,
    pub timing: PeerTiming,
    /// Events one node may queue for the merge before its stream waits.
    pub peer_buffer: usize,
    /// How often a Checkpoint goes out while records flow.
    pub checkpoint_interval: Duration,
    pub limits: ApiLimits,
}
