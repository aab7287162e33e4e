//! At-least-once delivery of the history to a system outside the node (an OpenTelemetry
//! collector, a Kafka cluster). An exporter follows the store from its own saved cursor, hands
//! records over in batches, and moves and saves its cursor only once the receiving end has
//! acknowledged a batch. An outage only delays delivery: the records wait in the history, and
//! the exporter retries with backoff, then reads on from its cursor. What it can never deliver
//! is counted: records retention removed before the exporter reached them (`skipped`) and
//! records the receiving end refused for good (`rejected`). Duplicates happen only for a batch
//! acknowledged just before a crash or a restart, whose cursor was not saved yet.
//!
//! Three stages, so each can have a core: a reader task follows the store and cuts batches, a
//! blocking task encodes each batch (the sink's `Encode`), and the sender hands the encoded
//! batches over in order, one answer at a time. The reader stays at most one batch ahead of the
//! sender (a bounded channel), so the lead held in memory is a batch or two.
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

/// Turns a batch of records into what a receiving end is sent. It runs on the exporter's
/// reader, apart from sending: the next batch is read and encoded while the receiving end
/// answers for this one, so the two use separate cores.
pub trait Encode: Send + Sync + 'static {
    type Encoded: Send + Sync + 'static;
    /// A batch that cannot be encoded is refused for good (`SinkError::Rejected`).
    fn encode(&self, batch: &[Arc<pb::Flow>]) -> Result<Self::Encoded, SinkError>;
}

/// A receiving end: hands an encoded batch over and says once it is acknowledged.
pub trait Sink: Send {
    type Encoder: Encode;
    fn encoder(&self) -> Self::Encoder;
    /// Sends `batch` (of `records` records); called again with the same batch to retry.
    fn send(
        &mut self,
        batch: &<Self::Encoder as Encode>::Encoded,
        records: usize,
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

/// A batch the reader read, encoded (or being encoded), waiting for its turn to be sent.
struct Ready<T> {
    /// None when every record read was passed over: only the cursor moves.
    encoding: Option<tokio::task::JoinHandle<Result<T, SinkError>>>,
    records: usize,
    through: u64,
    oldest_recorded_ns: Option<u64>,
}

/// Delivers every record the store holds after the saved cursor, then every new one, until
/// the store closes. A first run starts with the records stored from then on.
pub async fn run<S: Sink>(mut sink: S, delivery: Delivery, hub: Hub, telemetry: Arc<Telemetry>) {
    let Delivery {
        exporter,
        cursor: cursor_file,
        matcher,
        batch_records,
        batch_wait,
        retry_max,
    } = delivery;
    let report = Report {
        exporter,
        hub: hub.clone(),
        telemetry,
    };
    let last_cursor = hub.store().last_cursor();
    let mut delivered = match cursor_file.load() {
        // A cursor is never past what the history stored: this history is a new one (the old
        // was damaged and moved aside, or removed), and all of it is still to be delivered.
        Some(cursor) if cursor > last_cursor => {
            tracing::warn!(
                exporter = exporter.name(),
                saved_cursor = cursor,
                last_cursor,
                "the saved export cursor is past the end of the history, which is a new one; exporting all of it"
            );
            save(&cursor_file, exporter, 0);
            0
        }
        Some(cursor) => cursor,
        None => {
            save(&cursor_file, exporter, last_cursor);
            last_cursor
        }
    };
    tracing::info!(
        exporter = exporter.name(),
        after_cursor = delivered,
        "exporting"
    );
    // One batch waits while one is out and the reader fills the next: a bounded lead, in
    // memory, over what the receiving end acknowledged.
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(1);
    let reader = Reader {
        matcher,
        batch_records,
        batch_wait,
        report: report.clone(),
    };
    // Aborted with this task (the agent's shutdown or a test dropping it).
    let _reader = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(reader.run(
        Arc::new(sink.encoder()),
        delivered,
        ready_tx,
    )));
    let mut failing = false;
    while let Some(mut batch) = ready.recv().await {
        let encoded = match batch.encoding.take() {
            None => None,
            Some(encoding) => Some(encoding.await.unwrap_or_else(|err| {
                Err(SinkError::Rejected(format!("the encoder failed: {err}")))
            })),
        };
        if send(
            &mut sink,
            encoded.as_ref(),
            &batch,
            delivered,
            retry_max,
            &report,
            &mut failing,
        )
        .await
        .is_break()
        {
            // At shutdown the batch stays unsent: the next start sends it.
            return;
        }
        if batch.through != delivered {
            delivered = batch.through;
            save(&cursor_file, exporter, delivered);
        }
        report.lag(delivered, None);
    }
}

/// Hands `batch` over until the receiving end answers for it (acknowledged, or refused for
/// good), retrying with backoff; `Break` when the store closed while it waited to retry.
async fn send<S: Sink>(
    sink: &mut S,
    encoded: Option<&Result<<S::Encoder as Encode>::Encoded, SinkError>>,
    batch: &Ready<<S::Encoder as Encode>::Encoded>,
    delivered: u64,
    retry_max: Duration,
    report: &Report,
    failing: &mut bool,
) -> std::ops::ControlFlow<()> {
    let exporter = report.exporter;
    let records = batch.records;
    let encoded = match encoded {
        None => return std::ops::ControlFlow::Continue(()),
        Some(Ok(encoded)) => encoded,
        Some(Err(err)) => {
            tracing::error!(exporter = exporter.name(), records, reason = %err, "a batch could not be encoded; its records are not exported");
            report.count(ExportCount::Rejected, records as u64);
            return std::ops::ControlFlow::Continue(());
        }
    };
    let mut retry = RETRY_FIRST;
    loop {
        report.lag(delivered, batch.oldest_recorded_ns);
        match sink.send(encoded, records).await {
            Ok(accepted) => {
                let rejected = accepted.rejected.min(records as u64);
                report.count(ExportCount::Sent, records as u64 - rejected);
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
                tracing::error!(exporter = exporter.name(), records, %reason, "the receiving end refused a batch; its records are not exported");
                report.count(ExportCount::Rejected, records as u64);
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
                retry = (retry * 2).min(retry_max);
            }
        }
    }
}

/// Follows the history from a cursor, batches and encodes what it reads, and hands the
/// batches over in order.
struct Reader {
    matcher: FlowMatcher,
    batch_records: usize,
    batch_wait: Duration,
    report: Report,
}

impl Reader {
    async fn run<E: Encode>(
        self,
        encoder: Arc<E>,
        mut through: u64,
        ready: tokio::sync::mpsc::Sender<Ready<E::Encoded>>,
    ) {
        loop {
            let mut subscription = self.report.hub.subscribe(
                Backlog::Range(Range::AfterCursor(through)),
                true,
                FlowMatcher::all(),
            );
            loop {
                let (batch, stop) = self.collect(&mut subscription, through).await;
                through = batch.through;
                let records = batch.flows.len();
                // Encoding is the exporter's CPU work: off the async workers, and while the
                // reader goes on to the next batch.
                let encoding = (records > 0).then(|| {
                    let encoder = encoder.clone();
                    let flows = batch.flows;
                    tokio::task::spawn_blocking(move || encoder.encode(&flows))
                });
                let ready_batch = Ready {
                    encoding,
                    records,
                    through,
                    oldest_recorded_ns: batch.oldest_recorded_ns,
                };
                if ready.send(ready_batch).await.is_err() {
                    return;
                }
                match stop {
                    None => {}
                    Some(Stop::Closed) => return,
                    Some(Stop::Resubscribe) => break,
                }
            }
        }
    }

    /// Reads the next batch after `delivered`: up to `batch_records` matching records, or what came
    /// within `batch_wait` of the first one.
    async fn collect(
        &self,
        subscription: &mut Subscription,
        delivered: u64,
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
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, subscription.next()).await {
                        Ok(event) => event,
                        Err(_) => return (batch, None),
                    }
                }
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
                            exporter = self.report.exporter.name(),
                            after_cursor = batch.through,
                            records = missing,
                            "retention removed records before they were exported"
                        );
                        self.report.count(ExportCount::Skipped, missing);
                    }
                    batch.through = flow.cursor;
                    batch
                        .oldest_recorded_ns
                        .get_or_insert_with(|| flow.recorded_time.as_ref().map_or(0, time_ns));
                    if self.matcher.matches(&flow) {
                        batch.flows.push(flow);
                    }
                    deadline.get_or_insert_with(|| Instant::now() + self.batch_wait);
                    if batch.flows.len() >= self.batch_records {
                        return (batch, None);
                    }
                }
                Some(Ok(SubscriptionEvent::Watermark(_))) => {}
                Some(Ok(SubscriptionEvent::Lost { .. })) => {
                    return (batch, Some(Stop::Resubscribe))
                }
                Some(Err(err)) => {
                    tracing::warn!(exporter = self.report.exporter.name(), error = %err, "export cannot read the history; retrying");
                    tokio::time::sleep(RETRY_FIRST).await;
                    return (batch, Some(Stop::Resubscribe));
                }
                None => return (batch, Some(Stop::Closed)),
            }
        }
    }
}

fn save(file: &CursorFile, exporter: Exporter, cursor: u64) {
    if let Err(err) = file.save(cursor) {
        // Delivery goes on; a restart would then send more of it again.
        tracing::warn!(exporter = exporter.name(), path = %file.path().display(), error = %err, "saving the export cursor");
    }
}

/// Where an exporter's counts and lag go.
#[derive(Clone)]
struct Report {
    exporter: Exporter,
    hub: Hub,
    telemetry: Arc<Telemetry>,
}

impl Report {
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
