//! A node without a kernel for the exporter tests: an in-process history fed with synthetic
//! records, and exporters following it.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use flowd::{
    export::{self, CursorFile, Delivery, Sink},
    flow::FlowRecord,
    query::FlowMatcher,
    store::{FlowStore, Hub, Retention},
    telemetry::{Counter, ExportCount, Exporter, Telemetry},
};

pub struct ExportNode {
    pub hub: Hub,
    pub telemetry: Arc<Telemetry>,
    pub dir: tempfile::TempDir,
}

impl ExportNode {
    /// A history bounded to `max_bytes` of records (retention runs only when a test asks).
    pub fn new(max_bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = FlowStore::open(
            &dir.path().join("flows.redb"),
            Retention {
                max_age: Duration::from_secs(3600),
                max_bytes,
            },
            4 << 20,
        )
        .expect("open the history");
        Self {
            hub: Hub::new(Arc::new(store), 1024),
            telemetry: Arc::new(Telemetry::new("node-a", 1024)),
            dir,
        }
    }

    pub fn cursor_file(&self, exporter: Exporter) -> std::path::PathBuf {
        self.dir
            .path()
            .join(format!("flows.redb.{}.cursor", exporter.name()))
    }

    /// Starts `exporter` delivering every record through `sink`, in batches of up to 100, and
    /// returns once it has saved its cursor (a first start exports what is stored after that).
    pub async fn export<S: Sink + 'static>(
        &self,
        exporter: Exporter,
        sink: S,
    ) -> tokio::task::JoinHandle<()> {
        self.export_matching(exporter, sink, FlowMatcher::all())
            .await
    }

    /// As `export`, only the records `matcher` matches.
    pub async fn export_matching<S: Sink + 'static>(
        &self,
        exporter: Exporter,
        sink: S,
        matcher: FlowMatcher,
    ) -> tokio::task::JoinHandle<()> {
        let delivery = Delivery {
            exporter,
            cursor: CursorFile::new(self.cursor_file(exporter)),
            matcher,
            batch_records: 100,
            batch_wait: Duration::from_millis(20),
            retry_max: Duration::from_millis(300),
        };
        let task = tokio::spawn(export::run_delivery(
            sink,
            delivery,
            self.hub.clone(),
            self.telemetry.clone(),
        ));
        let cursor = self.cursor_file(exporter);
        until("the exporter saved its first cursor", || cursor.exists()).await;
        task
    }

    /// Stores `count` records of `connections` distinct connections (source ports), in turn.
    pub async fn publish(&self, count: usize, connections: usize) {
        let now = SystemTime::now();
        let records = (0..count)
            .map(|i| {
                let mut record = FlowRecord::sample(10_000 + (i % connections) as u16);
                (record.start, record.end) = (now, now);
                record
            })
            .collect();
        self.hub.publish(records, &self.telemetry).await;
    }

    pub fn counter(&self, exporter: Exporter, count: ExportCount) -> u64 {
        self.telemetry
            .counter(&Counter::Export(exporter, count))
            .unwrap_or(0)
    }

    /// The cursors the history holds.
    pub fn cursors(&self) -> std::ops::RangeInclusive<u64> {
        let (first, last) = self.hub.store().bounds().unwrap().expect("records");
        first..=last
    }
}

/// Waits for `done`, checking every 20 ms, at most 30 s.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
