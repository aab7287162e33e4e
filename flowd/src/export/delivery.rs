//! At-least-once delivery of the history to a system outside the node (an OpenTelemetry
//! collector, a Kafka cluster). An exporter follows the store from its own saved cursor, hands
//! records over in batches, and moves and saves its cursor only once the receiving end has
//! acknowledged a batch. An outage only delays delivery: the records wait in the history, and
//! the exporter retries with backoff, then reads on from its cursor. What it can never deliver
//! is counted: records retention removed before the exporter reached them (`skipped`) and
//! records the receiving end refused for good (`rejected`). Duplicates happen only for a batch
//! acknowledged just before a crash or a restart, whose cursor was not saved yet.
//!
//! Exporters never slow capture: they read as subscribers of the store, and one that falls
//! behind the live stream reads on from the history instead.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::time::Instant;

use super::cursor::CursorFile;
use crate::{
    proto::v1 as pb,
    query::FlowMatcher,
    store::{time_ns, Backlog, Hub, Range, Subscription, SubscriptionEvent},
    telemetry::{Counter, ExportCount, Exporter, Telemetry},
};

/// What a receiving end said about a batch it acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Records it acknowledged but refused (OTLP partial success): never retried.
    pub rejected: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The receiving end cannot take the batch now (down, unreachable, overloaded, timed out):
    /// it is sent again after a backoff.
    #[error("{0}")]
    Unavailable(String),
    /// The receiving end refuses the batch as it is, and always will: its records are counted
    /// as rejected and delivery goes on.
    #[error("{0}")]
    Rejected(String),
}

/// A receiving end: hands a batch over and says once it is acknowledged.
pub trait Sink: Send {
    fn send(
        &mut self,
        batch: &[Arc<pb::Flow>],
    ) -> impl Future<Output = Result<Accepted, SinkError>> + Send;
}

/// How an exporter follows the history.
pub struct Delivery {
    pub exporter: Exporter,
    pub cursor: CursorFile,
    /// Which records are exported; the others are passed over (and count as delivered).
    pub matcher: FlowMatcher,
    /// Records per batch at most.
    pub batch_records: usize,
    /// How long a batch waits to fill once its first record is there.
    pub batch_wait: Duration,
    /// The longest pause between retries (the first is RETRY_FIRST, doubling up to this).
    pub retry_max: Duration,
}

const RETRY_FIRST: Duration = Duration::from_millis(200);

/// What ended the collection of a batch, besides a full batch or its time.
enum Stop {
    /// The store closed: the agent stops once this batch is out.
    Closed,
    /// Fell behind the live stream or could not read the history: read on from the cursor.
    Resubscribe,
}

/// Records read since the last acknowledged batch.
struct Batch {
    flows: Vec<Arc<pb::Flow>>,
    /// Every record up to this cursor is in `flows` or was passed over.
    through: u64,
    /// When the oldest record read into it was recorded (ns): the delivery's lag.
    oldest_recorded_ns: Option<u64>,
}

/// Delivers every record the store holds after the saved cursor, then every new one, until
/// the store closes. A first run starts with the records stored from then on.
pub async fn run<S: Sink>(mut sink: S, delivery: Delivery, hub: Hub, telemetry: Arc<Telemetry>) {
    let exporter = delivery.exporter;
    let report = Report {
        exporter,
        hub: &hub,
        telemetry: &telemetry,
    };
    let last_cursor = hub.store().last_cursor();
    let mut delivered = match delivery.cursor.load() {
        // A cursor is never past what the history stored: this history is a new one (the old
        // was damaged and moved aside, or removed), and all of it is still to be delivered.
        Some(cursor) if cursor > last_cursor => {
            tracing::warn!(
                exporter = exporter.name(),
                saved_cursor = cursor,
                last_cursor,
                "the saved export cursor is past the end of the history, which is a new one; exporting all of it"
            );
            save(&delivery, 0);
            0
        }
        Some(cursor) => cursor,
        None => {
            save(&delivery, last_cursor);
            last_cursor
        }
    };
    tracing::info!(
        exporter = exporter.name(),
        after_cursor = delivered,
        "exporting"
    );
    let mut failing = false;
    loop {
        let mut subscription = hub.subscribe(
            Backlog::Range(Range::AfterCursor(delivered)),
            true,
            FlowMatcher::all(),
        );
        let mut next = collect(&mut subscription, &delivery, delivered, &report).await;
        loop {
            let (batch, stop) = next;
            // While a batch is out, the next one is read: the history and the receiving end
            // work at the same time. It is sent only once this one is answered.
            let prefetch = async {
                match stop {
                    None => {
                        Some(collect(&mut subscription, &delivery, batch.through, &report).await)
                    }
                    Some(_) => None,
                }
            };
            // The cursor moves as soon as the batch is answered, not when the next is read.
            let sending = async {
                let sent = send(
                    &mut sink,
                    &batch,
                    delivered,
                    &delivery,
                    &report,
                    &mut failing,
                )
                .await;
                if sent.is_continue() {
                    if batch.through != delivered {
                        delivered = batch.through;
                        save(&delivery, delivered);
                    }
                    report.lag(delivered, None);
                }
                sent
            };
            let (sent, fetched) = tokio::join!(sending, prefetch);
            if sent.is_break() {
                // At shutdown the batch stays unsent: the next start sends it.
                return;
            }
            match (stop, fetched) {
                (None, Some(fetched)) => next = fetched,
                (Some(Stop::Closed), _) => return,
                (Some(Stop::Resubscribe), _) | (None, None) => break,
            }
        }
    }
}

/// Hands `batch` over until the receiving end answers for it (acknowledged, or refused for
/// good), retrying with backoff; `Break` when the store closed while it waited to retry.
async fn send<S: Sink>(
    sink: &mut S,
    batch: &Batch,
    delivered: u64,
    delivery: &Delivery,
    report: &Report<'_>,
    failing: &mut bool,
) -> std::ops::ControlFlow<()> {
    let exporter = delivery.exporter;
    if batch.flows.is_empty() {
        return std::ops::ControlFlow::Continue(());
    }
    let mut retry = RETRY_FIRST;
    loop {
        report.lag(delivered, batch.oldest_recorded_ns);
        match sink.send(&batch.flows).await {
            Ok(accepted) => {
                let rejected = accepted.rejected.min(batch.flows.len() as u64);
                report.count(ExportCount::Sent, batch.flows.len() as u64 - rejected);
                if rejected > 0 {
                    tracing::warn!(
                        exporter = exporter.name(),
                        rejected,
                        "the receiving end refused some records"
                    );
                    report.count(ExportCount::Rejected, rejected);
                }
                if *failing {
                    tracing::info!(exporter = exporter.name(), "delivering again");
                    *failing = false;
                }
                return std::ops::ControlFlow::Continue(());
            }
            Err(SinkError::Rejected(reason)) => {
                tracing::error!(exporter = exporter.name(), records = batch.flows.len(), %reason, "the receiving end refused a batch; its records are not exported");
                report.count(ExportCount::Rejected, batch.flows.len() as u64);
                return std::ops::ControlFlow::Continue(());
            }
            Err(SinkError::Unavailable(reason)) => {
                report.count(ExportCount::Failed, 1);
                if !*failing {
                    tracing::warn!(exporter = exporter.name(), %reason, "export failed; retrying, the records wait in the history");
                    *failing = true;
                } else {
                    tracing::debug!(exporter = exporter.name(), %reason, ?retry, "export failed again");
                }
                if report.hub.wait_unless_closed(retry).await.is_break() {
                    return std::ops::ControlFlow::Break(());
                }
                report.count(ExportCount::Retried, 1);
                retry = (retry * 2).min(delivery.retry_max);
            }
        }
    }
}

/// Reads the next batch after `delivered`: up to `batch_records` matching records, or what came
/// within `batch_wait` of the first one.
async fn collect(
    subscription: &mut Subscription,
    delivery: &Delivery,
    delivered: u64,
    report: &Report<'_>,
) -> (Batch, Option<Stop>) {
    let mut batch = Batch {
        flows: Vec::new(),
        through: delivered,
        oldest_recorded_ns: None,
    };
    let mut deadline: Option<Instant> = None;
    loop {
        let event = match deadline {
            None => subscription.next().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, subscription.next()).await {
                Ok(event) => event,
                Err(_) => return (batch, None),
            },
        };
        match event {
            Some(Ok(SubscriptionEvent::Flow(flow))) => {
                // Read again after a resubscription.
                if flow.cursor <= batch.through {
                    continue;
                }
                let missing = flow.cursor - batch.through - 1;
                if missing > 0 {
                    tracing::warn!(
                        exporter = delivery.exporter.name(),
                        after_cursor = batch.through,
                        records = missing,
                        "retention removed records before they were exported"
                    );
                    report.count(ExportCount::Skipped, missing);
                }
                batch.through = flow.cursor;
                batch
                    .oldest_recorded_ns
                    .get_or_insert_with(|| flow.recorded_time.as_ref().map_or(0, time_ns));
                if delivery.matcher.matches(&flow) {
                    batch.flows.push(flow);
                }
                deadline.get_or_insert_with(|| Instant::now() + delivery.batch_wait);
                if batch.flows.len() >= delivery.batch_records {
                    return (batch, None);
                }
            }
            Some(Ok(SubscriptionEvent::Watermark(_))) => {}
            Some(Ok(SubscriptionEvent::Lost { .. })) => return (batch, Some(Stop::Resubscribe)),
            Some(Err(err)) => {
                tracing::warn!(exporter = delivery.exporter.name(), error = %err, "export cannot read the history; retrying");
                tokio::time::sleep(RETRY_FIRST).await;
                return (batch, Some(Stop::Resubscribe));
            }
            None => return (batch, Some(Stop::Closed)),
        }
    }
}

fn save(delivery: &Delivery, cursor: u64) {
    if let Err(err) = delivery.cursor.save(cursor) {
        // Delivery goes on; a restart would then send more of it again.
        tracing::warn!(exporter = delivery.exporter.name(), path = %delivery.cursor.path().display(), error = %err, "saving the export cursor");
    }
}

/// Where an exporter's counts and lag go.
struct Report<'a> {
    exporter: Exporter,
    hub: &'a Hub,
    telemetry: &'a Telemetry,
}

impl Report<'_> {
    fn count(&self, what: ExportCount, n: u64) {
        if n > 0 {
            self.telemetry
                .add_counter(Counter::Export(self.exporter, what), n);
        }
    }

    /// Records stored but not yet delivered, and how old the oldest of them is.
    fn lag(&self, delivered: u64, oldest_recorded_ns: Option<u64>) {
        let records = self.hub.store().last_cursor().saturating_sub(delivered);
        let now = crate::store::system_time_ns(std::time::SystemTime::now());
        let seconds = match (records, oldest_recorded_ns) {
            (0, _) | (_, None) => 0,
            (_, Some(recorded)) => now.saturating_sub(recorded) / 1_000_000_000,
        };
        let gauge = |what| Counter::Export(self.exporter, what);
        self.telemetry
            .set_counter(gauge(ExportCount::LagRecords), records);
        self.telemetry
            .set_counter(gauge(ExportCount::LagSeconds), seconds);
    }
}
