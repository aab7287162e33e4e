//! The store stage: appends incoming records to history and fans them out to followers.
//!
//! Followers read from a broadcast channel: one slow follower falls behind on its own (and is
//! told how much it missed) instead of slowing capture or the other followers.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::{History, StoredFlow};
use crate::{flow::FlowRecord, telemetry::Telemetry};

#[derive(Clone)]
pub struct Hub {
    history: Arc<History>,
    updates: broadcast::Sender<Arc<StoredFlow>>,
    /// Cancelled once the store stage has published its last record.
    closed: CancellationToken,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionEvent {
    Flow(Arc<StoredFlow>),
    /// `count` records were skipped because the subscriber was too slow; the next flow delivered
    /// has cursor `next_cursor`.
    Lost {
        count: u64,
        next_cursor: u64,
    },
}

pub struct Subscription {
    backlog: std::vec::IntoIter<Arc<StoredFlow>>,
    updates: Option<broadcast::Receiver<Arc<StoredFlow>>>,
    last_cursor: u64,
    closed: CancellationToken,
}

impl Hub {
    pub fn new(history_records: usize, subscriber_buffer: usize) -> Self {
        let (updates, _) = broadcast::channel(subscriber_buffer);
        Self {
            history: Arc::new(History::new(history_records)),
            updates,
            closed: CancellationToken::new(),
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn subscribers(&self) -> usize {
        self.updates.receiver_count()
    }

    /// The newest `last` records, then (with `follow`) every new one.
    pub fn subscribe(&self, last: usize, follow: bool) -> Subscription {
        // Subscribe before reading history, then skip duplicates by cursor: no record can fall
        // between the two.
        let updates = follow.then(|| self.updates.subscribe());
        let backlog = self.history.last(last);
        let last_cursor = backlog
            .last()
            .map(|f| f.cursor)
            .or_else(|| self.history.bounds().map(|(_, last)| last))
            .unwrap_or(0);
        Subscription {
            backlog: backlog.into_iter(),
            updates,
            last_cursor,
            closed: self.closed.clone(),
        }
    }

    /// Ends every follow once it has delivered what was published.
    pub fn close(&self) {
        self.closed.cancel();
    }

    fn publish(&self, records: Vec<FlowRecord>) -> usize {
        let stored = self.history.append(records);
        let count = stored.len();
        for flow in stored {
            // No receivers is normal: nobody is following right now.
            let _ = self.updates.send(flow);
        }
        count
    }
}

impl Subscription {
    /// The next event, or `None` when the backlog is done and there is nothing to follow (or the
    /// agent is shutting down).
    pub async fn next(&mut self) -> Option<SubscriptionEvent> {
        if let Some(flow) = self.backlog.next() {
            self.last_cursor = flow.cursor;
            return Some(SubscriptionEvent::Flow(flow));
        }
        let updates = self.updates.as_mut()?;
        loop {
            let received = tokio::select! {
                biased;
                received = updates.recv() => received,
                () = self.closed.cancelled() => match updates.try_recv() {
                    Ok(flow) => Ok(flow),
                    Err(broadcast::error::TryRecvError::Lagged(count)) => {
                        Err(broadcast::error::RecvError::Lagged(count))
                    }
                    Err(_) => return None,
                },
            };
            match received {
                Ok(flow) if flow.cursor <= self.last_cursor => continue,
                Ok(flow) => {
                    self.last_cursor = flow.cursor;
                    return Some(SubscriptionEvent::Flow(flow));
                }
                Err(broadcast::error::RecvError::Lagged(count)) => {
                    let next_cursor = self.last_cursor + count + 1;
                    self.last_cursor = next_cursor - 1;
                    return Some(SubscriptionEvent::Lost { count, next_cursor });
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Runs the store stage until the flow stage closes its side.
pub async fn run(hub: Hub, mut input: mpsc::Receiver<Vec<FlowRecord>>, telemetry: Arc<Telemetry>) {
    while let Some(records) = input.recv().await {
        let count = hub.publish(records);
        telemetry.record_flows(count);
    }
    hub.close();
    tracing::debug!("store stage drained");
}

#[cfg(test)]
mod tests;
