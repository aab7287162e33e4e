//! The delivery stages (read, encode, send) with a sink that records what it is handed: batches
//! reach it in cursor order, each record once, through failed attempts; a batch its encoder
//! refuses is counted as rejected and delivery goes on past it.

mod support;

use std::sync::{Arc, Mutex};

use flowd::{
    export::{Accepted, Encode, Sink, SinkError},
    proto::v1 as pb,
    telemetry::{ExportCount, Exporter},
};
use support::export::{until, ExportNode};

/// The cursor that cannot be encoded.
const UNENCODABLE: u64 = 13;

struct CursorEncoder;

impl Encode for CursorEncoder {
    type Encoded = Vec<u64>;

    fn encode(&self, batch: &[Arc<pb::Flow>]) -> Result<Vec<u64>, SinkError> {
        if batch.iter().any(|f| f.cursor == UNENCODABLE) {
            return Err(SinkError::Rejected(format!(
                "record {UNENCODABLE} cannot be encoded"
            )));
        }
        Ok(batch.iter().map(|f| f.cursor).collect())
    }
}

/// Keeps the cursors it was sent; the first `failures` attempts fail.
struct Recording {
    sent: Arc<Mutex<Vec<u64>>>,
    failures: usize,
}

impl Sink for Recording {
    type Encoder = CursorEncoder;

    fn encoder(&self) -> CursorEncoder {
        CursorEncoder
    }

    async fn send(&mut self, batch: &Vec<u64>, records: usize) -> Result<Accepted, SinkError> {
        assert_eq!(batch.len(), records);
        if self.failures > 0 {
            self.failures -= 1;
            return Err(SinkError::Unavailable("down for now".into()));
        }
        self.sent.lock().unwrap().extend(batch);
        Ok(Accepted::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_arrive_in_order_once_each_and_an_unencodable_one_is_counted() {
    let node = ExportNode::new(u64::MAX);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let sink = Recording {
        sent: sent.clone(),
        failures: 3,
    };
    let exporter = node.export(Exporter::Otlp, sink).await;
    for _ in 0..10 {
        node.publish(100, 100).await;
    }
    until("1,000 records answered for", || {
        node.counter(Exporter::Otlp, ExportCount::Sent)
            + node.counter(Exporter::Otlp, ExportCount::Rejected)
            == 1000
    })
    .await;
    let sent = sent.lock().unwrap().clone();
    let rejected = node.counter(Exporter::Otlp, ExportCount::Rejected);
    assert!(rejected > 0, "the batch holding {UNENCODABLE} is refused");
    assert_eq!(sent.len() as u64, 1000 - rejected);
    assert!(!sent.contains(&UNENCODABLE));
    assert!(
        sent.windows(2).all(|w| w[0] < w[1]),
        "in cursor order, each once"
    );
    assert_eq!(node.counter(Exporter::Otlp, ExportCount::Failed), 3);
    assert_eq!(node.counter(Exporter::Otlp, ExportCount::Retried), 3);
    let last = *node.cursors().end();
    let cursor = node.cursor_file(Exporter::Otlp);
    until("the cursor saved past the last record", || {
        std::fs::read_to_string(&cursor)
            .map(|c| c.trim() == last.to_string())
            .unwrap_or(false)
    })
    .await;
    exporter.abort();
}
