//! `flowd relay`: the agents' API for the whole cluster. Each call streams every node with the
//! query pushed down, merges the streams in time order (a record goes out once every streaming
//! node's next record or watermark is later), applies `last` to the merged result, and gives
//! the consumer a cluster position (a per-node cursor vector as one token) to resume from. The
//! relay keeps no history: the nodes' durable histories are the buffer, so a node that was
//! away, or a consumer that fell behind, is caught up from them.

pub mod discovery;
mod last;
mod merge;
mod peer;
mod position;
mod raw;
mod service;
mod stream;

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

pub use merge::{Lane, MergeOrder, Merger};
pub use peer::{PeerTarget, PeerTiming};
pub use position::{Position, PositionError};
pub use raw::PassThrough;
pub use service::RelayService;

use crate::api::ApiLimits;

/// What a relay serves and how it treats its nodes.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// The name GetStatus gives the relay itself.
    pub name: String,
    pub peers: PeerSet,
    pub timing: PeerTiming,
    /// Records one node may queue for the merge before its stream waits (in batches of
    /// `peer::BATCH`); with many nodes this is most of the relay's memory.
    pub peer_buffer: usize,
    /// How often a Checkpoint goes out while records flow.
    pub checkpoint_interval: Duration,
    pub limits: ApiLimits,
}

/// The agents a relay reads, as they are now: a fixed list, or what discovery last found
/// (`None` until its first list).
#[derive(Clone)]
pub struct PeerSet {
    receiver: watch::Receiver<Option<Vec<PeerTarget>>>,
    /// Holds a fixed set's sender, so its channel never reads as closed.
    _fixed: Option<Arc<watch::Sender<Option<Vec<PeerTarget>>>>>,
}

impl std::fmt::Debug for PeerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.current()).finish()
    }
}

impl PeerSet {
    pub fn fixed(peers: Vec<PeerTarget>) -> Self {
        let (sender, receiver) = watch::channel(Some(peers));
        Self {
            receiver,
            _fixed: Some(Arc::new(sender)),
        }
    }

    fn followed(receiver: watch::Receiver<Option<Vec<PeerTarget>>>) -> Self {
        Self {
            receiver,
            _fixed: None,
        }
    }

    pub fn current(&self) -> Vec<PeerTarget> {
        self.receiver.borrow().clone().unwrap_or_default()
    }

    /// Resolves when the set changes (an error once discovery stopped for good).
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.receiver.changed().await
    }

    /// Waits (at most `timeout`) for discovery's first list, so a call made at start does not
    /// see an empty cluster.
    pub async fn wait_listed(&self, timeout: Duration) {
        let mut receiver = self.receiver.clone();
        let _ = tokio::time::timeout(timeout, receiver.wait_for(Option::is_some)).await;
    }
}
