//! The store stage (append, retention, fan-out) and subscriptions over history plus live records.
//!
//! Followers read from a broadcast channel: one slow follower falls behind on its own (and is
//! told how much it missed, and from which cursor to ask the store again) instead of slowing
//! capture or the other followers.

use std::{
    collections::VecDeque,
    ops::ControlFlow,
    sync::{atomic::Ordering, Arc},
    time::{Duration, SystemTime},
};

use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{FlowStore, Range, StoreError};
use crate::{
    flow::{wire, FlowRecord},
    proto::v1 as pb,
    query::FlowMatcher,
    telemetry::{LostCause, Telemetry},
};

#[derive(Clone)]
pub struct Hub {
    store: Arc<FlowStore>,
    updates: broadcast::Sender<Arc<pb::Flow>>,
    /// The store's watermark (ns), raised after every fan-out and on a timer: every record
    /// stamped earlier has been sent on `updates` before the value is.
    watermark: watch::Sender<u64>,
    /// Cancelled once the store stage has published its last record.
    closed: CancellationToken,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionEvent {
    Flow(Arc<pb::Flow>),
    /// `count` records were skipped because the subscriber was too slow. They are still in the
    /// store after cursor `resume_after`; the next flow delivered is at `next_cursor` or later.
    Lost {
        count: u64,
        resume_after: u64,
        next_cursor: u64,
    },
    /// No record delivered after this one was recorded before this time (ns); only to
    /// subscriptions that asked for watermarks.
    Watermark(u64),
}

/// What history to replay before following.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backlog {
    None,
    /// The newest N matching records.
    Last(usize),
    /// Everything in a range of the store.
    Range(Range),
}

enum Replay {
    Pending(Backlog),
    Paging {
        range: Range,
        resume: Option<(u64, u64)>,
    },
    Done,
}

pub struct Subscription {
    store: Arc<FlowStore>,
    matcher: Arc<FlowMatcher>,
    replay: Replay,
    buffered: VecDeque<Arc<pb::Flow>>,
    /// Everything up to this cursor comes from the store; later records from `updates`.
    frontier: u64,
    updates: Option<broadcast::Receiver<Arc<pb::Flow>>>,
    last_live: u64,
    closed: CancellationToken,
    watermarks: Option<watch::Receiver<u64>>,
    /// Live events taken from the broadcast ahead of a watermark, in order, the watermark last.
    queued: VecDeque<SubscriptionEvent>,
}

impl Hub {
    pub fn new(store: Arc<FlowStore>, subscriber_buffer: usize) -> Self {
        let (updates, _) = broadcast::channel(subscriber_buffer);
        let (watermark, _) = watch::channel(store.watermark());
        Self {
            store,
            updates,
            watermark,
            closed: CancellationToken::new(),
        }
    }

    /// Raises the watermark to now and tells the followers that asked for it: they learn that
    /// the node has moved on even when nothing is recorded (the relay merges on it).
    pub fn pulse_watermark(&self) {
        let now = self.store.advance_watermark(SystemTime::now());
        self.watermark.send_replace(now);
    }

    pub fn store(&self) -> &Arc<FlowStore> {
        &self.store
    }

    /// Subscriptions following live records now: a consumer that follows from "what comes
    /// next" has started once it is counted here.
    pub fn followers(&self) -> usize {
        self.updates.receiver_count()
    }

    pub fn subscribe(&self, backlog: Backlog, follow: bool, matcher: FlowMatcher) -> Subscription {
        self.subscribe_with(backlog, follow, false, matcher)
    }

    /// As `subscribe`; with `watermarks`, a follow also delivers the store's watermark.
    pub fn subscribe_with(
        &self,
        backlog: Backlog,
        follow: bool,
        watermarks: bool,
        matcher: FlowMatcher,
    ) -> Subscription {
        // Subscribe before reading the frontier: a record is either at or below the frontier
        // (replayed from the store) or above it (delivered live), never lost in between.
        let updates = follow.then(|| self.updates.subscribe());
        let frontier = self.store.last_cursor();
        Subscription {
            store: self.store.clone(),
            matcher: Arc::new(matcher),
            replay: Replay::Pending(backlog),
            buffered: VecDeque::new(),
            frontier,
            updates,
            last_live: frontier,
            closed: self.closed.clone(),
            watermarks: (follow && watermarks).then(|| self.watermark.subscribe()),
            queued: VecDeque::new(),
        }
    }

    /// Ends every follow once it has delivered what was published.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Waits `pause` before a consumer retries, unless the store closes first (`Break`): then
    /// nothing more comes and the consumer stops, to resume from its cursor at the next start.
    pub async fn wait_unless_closed(&self, pause: Duration) -> ControlFlow<()> {
        tokio::select! {
            () = tokio::time::sleep(pause) => ControlFlow::Continue(()),
            () = self.closed.cancelled() => ControlFlow::Break(()),
        }
    }

    /// Stores records and fans them out at once; what cannot be stored is lost and counted.
    /// The store stage holds such records and retries instead (`run`).
    pub async fn publish(&self, records: Vec<FlowRecord>, telemetry: &Telemetry) {
        let flows = prepare(&records);
        let count = flows.len() as u64;
        if self.store_and_fan_out(flows, telemetry).await.is_err() {
            telemetry.add_lost(LostCause::HistoryWriteFailed, count);
        }
    }

    /// Stores `flows` in one transaction and hands them to followers; gives them back when the
    /// history could not take them (the store reports why).
    async fn store_and_fan_out(
        &self,
        flows: Vec<pb::Flow>,
        telemetry: &Telemetry,
    ) -> Result<(), Vec<pb::Flow>> {
        let store = self.store.clone();
        let count = flows.len();
        let written = tokio::task::spawn_blocking(move || {
            let mut flows = flows;
            let result = store.append_in_place(&mut flows);
            (flows, result)
        })
        .await;
        match written {
            Ok((flows, Ok(()))) => {
                telemetry.record_flows(count);
                for flow in flows {
                    // No receivers is normal: nobody is following right now.
                    let _ = self.updates.send(Arc::new(flow));
                }
                // After the records: a follower that sees this value has them queued already.
                self.watermark.send_replace(self.store.watermark());
                Ok(())
            }
            Ok((flows, Err(err))) => {
                tracing::debug!(error = %err, records = count, "writing to the flow history failed");
                Err(flows)
            }
            Err(err) => {
                tracing::error!(error = %err, records = count, "history writer task failed");
                telemetry.add_lost(LostCause::HistoryWriteFailed, count as u64);
                Ok(())
            }
        }
    }
}

/// Encodes a batch for the history.
fn prepare(records: &[FlowRecord]) -> Vec<pb::Flow> {
    records.iter().map(wire::to_proto).collect()
}

/// Records the history could not take yet, oldest first, at most `limit`: a full disk delays
/// them instead of losing them, and memory stays bounded however long it lasts.
struct Held {
    flows: Vec<pb::Flow>,
    limit: usize,
}

impl Held {
    /// Takes back what a write returned, dropping the oldest beyond the limit (counted).
    fn keep(&mut self, returned: Vec<pb::Flow>, telemetry: &Telemetry) {
        let mut flows = std::mem::take(&mut self.flows);
        flows.extend(returned);
        let excess = flows.len().saturating_sub(self.limit);
        if excess > 0 {
            flows.drain(..excess);
            telemetry.add_lost(LostCause::HistoryWriteFailed, excess as u64);
        }
        self.flows = flows;
        telemetry
            .history_held
            .store(self.flows.len() as u64, Ordering::Relaxed);
    }

    /// Offers everything held, followed by `more`, to the history.
    async fn flush(&mut self, more: Vec<pb::Flow>, hub: &Hub, telemetry: &Telemetry) {
        let mut flows = std::mem::take(&mut self.flows);
        flows.extend(more);
        if flows.is_empty() {
            return;
        }
        match hub.store_and_fan_out(flows, telemetry).await {
            Ok(()) => telemetry.history_held.store(0, Ordering::Relaxed),
            Err(flows) => self.keep(flows, telemetry),
        }
    }
}

impl Subscription {
    /// The next event; `None` when replay is done and there is nothing to follow, or the agent
    /// is shutting down.
    pub async fn next(&mut self) -> Option<Result<SubscriptionEvent, StoreError>> {
        loop {
            if let Some(flow) = self.buffered.pop_front() {
                return Some(Ok(SubscriptionEvent::Flow(flow)));
            }
            if let Some(event) = self.queued.pop_front() {
                return Some(Ok(event));
            }
            match self.fill().await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(err) => return Some(Err(err)),
            }
        }
        self.next_live().await.map(Ok)
    }

    /// Loads the next batch of history into `buffered`; false once replay is over.
    async fn fill(&mut self) -> Result<bool, StoreError> {
        let store = self.store.clone();
        let matcher = self.matcher.clone();
        let frontier = self.frontier;
        match std::mem::replace(&mut self.replay, Replay::Done) {
            Replay::Done => Ok(false),
            Replay::Pending(Backlog::None) => Ok(false),
            Replay::Pending(Backlog::Last(n)) => {
                // Where the last n begin, then page forward from there: a client asking for
                // 2^63 records costs the agent a page of memory, not the whole history.
                let start = blocking(move || {
                    let keep = (!matcher.matches_everything())
                        .then_some(|f: &pb::Flow| matcher.matches(f));
                    store.last_start(n, frontier, keep)
                })
                .await?;
                if let Some(start) = start {
                    self.replay = Replay::Paging {
                        range: Range::AfterCursor(start - 1),
                        resume: None,
                    };
                }
                Ok(true)
            }
            Replay::Pending(Backlog::Range(range)) => {
                self.replay = Replay::Paging {
                    range,
                    resume: None,
                };
                Ok(true)
            }
            Replay::Paging { range, resume } => {
                let (flows, next) = blocking(move || {
                    let mut flows = Vec::new();
                    let mut past_frontier = false;
                    let next = store.page(range, resume, |flow| {
                        if flow.cursor > frontier {
                            // Cursor order: nothing later in this range belongs to the replay.
                            // Time order: later cursors come live; keep scanning the range.
                            if matches!(range, Range::AfterCursor(_)) {
                                past_frontier = true;
                                return ControlFlow::Break(());
                            }
                        } else if matcher.matches(&flow) {
                            flows.push(Arc::new(flow));
                        }
                        ControlFlow::Continue(())
                    })?;
                    Ok((flows, if past_frontier { None } else { next }))
                })
                .await?;
                self.buffered.extend(flows);
                if let Some(resume) = next {
                    self.replay = Replay::Paging {
                        range,
                        resume: Some(resume),
                    };
                }
                Ok(true)
            }
        }
    }

    async fn next_live(&mut self) -> Option<SubscriptionEvent> {
        loop {
            let updates = self.updates.as_mut()?;
            let received = tokio::select! {
                biased;
                received = updates.recv() => received,
                changed = changed(&mut self.watermarks) => {
                    if changed.is_err() {
                        self.watermarks = None;
                        continue;
                    }
                    return self.drain_before_watermark();
                }
                () = self.closed.cancelled() => match queued(updates) {
                    Some(received) => received,
                    None => return None,
                },
            };
            if let Some(event) = self.take_live(received) {
                return event;
            }
        }
    }

    /// One broadcast item: `Some` with what to deliver (a matching flow, a loss, or `None` for
    /// the end), `None` to read on.
    fn take_live(
        &mut self,
        received: Result<Arc<pb::Flow>, broadcast::error::RecvError>,
    ) -> Option<Option<SubscriptionEvent>> {
        match received {
            Ok(flow) if flow.cursor <= self.last_live => None,
            Ok(flow) => {
                self.last_live = flow.cursor;
                self.matcher
                    .matches(&flow)
                    .then_some(Some(SubscriptionEvent::Flow(flow)))
            }
            Err(broadcast::error::RecvError::Lagged(count)) => {
                let resume_after = self.last_live;
                self.last_live += count;
                Some(Some(SubscriptionEvent::Lost {
                    count,
                    resume_after,
                    next_cursor: self.last_live + 1,
                }))
            }
            Err(broadcast::error::RecvError::Closed) => Some(None),
        }
    }

    /// The watermark moved: every record stamped before it is queued on the broadcast already,
    /// so those go first and the watermark after them.
    fn drain_before_watermark(&mut self) -> Option<SubscriptionEvent> {
        let watermark = *self.watermarks.as_mut()?.borrow_and_update();
        while let Some(updates) = self.updates.as_mut() {
            let Some(received) = queued(updates) else {
                break;
            };
            match self.take_live(received) {
                None => {}
                Some(Some(event)) => self.queued.push_back(event),
                Some(None) => break,
            }
        }
        self.queued
            .push_back(SubscriptionEvent::Watermark(watermark));
        self.queued.pop_front()
    }
}

/// What is already queued on the broadcast, as `recv` would give it; `None` when nothing is.
fn queued(
    updates: &mut broadcast::Receiver<Arc<pb::Flow>>,
) -> Option<Result<Arc<pb::Flow>, broadcast::error::RecvError>> {
    match updates.try_recv() {
        Ok(flow) => Some(Ok(flow)),
        Err(broadcast::error::TryRecvError::Lagged(count)) => {
            Some(Err(broadcast::error::RecvError::Lagged(count)))
        }
        Err(_) => None,
    }
}

/// Resolves when the watermark changes; never, for a subscription that did not ask for it.
async fn changed(
    watermarks: &mut Option<watch::Receiver<u64>>,
) -> Result<(), watch::error::RecvError> {
    match watermarks {
        Some(receiver) => receiver.changed().await,
        None => std::future::pending().await,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StoreError::Database(format!("history reader task failed: {err}")))?
}

/// How often retention is enforced and the record rate sampled.
const HOUSEKEEPING: Duration = Duration::from_secs(5);

pub struct StoreStage {
    pub hub: Hub,
    pub telemetry: Arc<Telemetry>,
    /// Records held in memory while the history cannot be written.
    pub hold_records: usize,
    /// How often followers that asked for watermarks hear that the node moved on.
    pub watermark_interval: Duration,
}

/// Runs the store stage until the flow stage closes its side.
pub async fn run(stage: StoreStage, mut input: mpsc::Receiver<Vec<FlowRecord>>) {
    let StoreStage {
        hub,
        telemetry,
        hold_records,
        watermark_interval,
    } = stage;
    let mut watermarks = tokio::time::interval(watermark_interval);
    watermarks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held = Held {
        flows: Vec::new(),
        limit: hold_records,
    };
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let mut last_total = telemetry.flows_recorded.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            batch = input.recv() => match batch {
                Some(records) => held.flush(prepare(&records), &hub, &telemetry).await,
                None => break,
            },
            _ = watermarks.tick() => hub.pulse_watermark(),
            _ = housekeeping.tick() => {
                // Retried here too: a quiet node must not wait for traffic to recover.
                held.flush(Vec::new(), &hub, &telemetry).await;
                let store = hub.store.clone();
                match tokio::task::spawn_blocking(move || store.enforce_retention(SystemTime::now())).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(removed)) => tracing::debug!(removed, "history retention"),
                    Ok(Err(err)) => tracing::warn!(error = %err, "history retention failed"),
                    Err(err) => tracing::warn!(error = %err, "history retention task failed"),
                }
                let total = telemetry.flows_recorded.load(Ordering::Relaxed);
                telemetry.sample_rate(total - last_total, HOUSEKEEPING);
                last_total = total;
            }
        }
    }
    // One last try at shutdown; what still cannot be written is lost, and said so.
    held.flush(Vec::new(), &hub, &telemetry).await;
    if !held.flows.is_empty() {
        tracing::error!(
            records = held.flows.len(),
            "the history could not be written before stopping; these records are lost"
        );
        telemetry.add_lost(LostCause::HistoryWriteFailed, held.flows.len() as u64);
    }
    hub.close();
    tracing::debug!("store stage drained");
}

#[cfg(test)]
mod tests;
