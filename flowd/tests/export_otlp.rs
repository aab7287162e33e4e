//! The OTLP exporter against a receiver built from the official protobuf definitions (PyPI's
//! opentelemetry-proto with grpcio, `tests/receivers/otlp_receiver.py`), fed from an
//! in-process store: every record arrives through an outage of the receiver, a restart of the
//! exporter resumes from its cursor, and what cannot be delivered (refused, or removed by
//! retention first) is counted.

mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime},
};

use flowd::{
    export::OtlpSink,
    telemetry::{ExportCount, Exporter},
};
use support::export::{until, ExportNode};

/// The receiver process; killed on drop.
struct Receiver(Child);

impl Receiver {
    /// A receiver on `port`, or on a free one it picks with 0 (no other test can take it
    /// first); returns it and its port.
    fn start(port: u16, out: &Path, extra: &[&str]) -> (Self, u16) {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/receivers/otlp_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--out"])
            .arg(out)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the OTLP receiver (python3 with opentelemetry-proto and grpcio: cargo xtask setup)");
        let stdout = child.stdout.take().expect("stdout");
        // Killed and waited for on drop, whatever happens next.
        let receiver = Self(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the receiver's first line");
        let bound = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the receiver did not start: {line:?}"));
        assert!(
            port == 0 || port == bound,
            "the receiver took {bound}, not {port}"
        );
        (receiver, bound)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Records received, by cursor: how many times each arrived.
fn received(out: &Path) -> BTreeMap<u64, u32> {
    let mut cursors = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(out) else {
        return cursors;
    };
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let cursor = record["attributes"]["flowd.cursor"]
            .as_u64()
            .expect("every record carries flowd.cursor");
        *cursors.entry(cursor).or_default() += 1;
    }
    cursors
}

fn otlp(port: u16) -> OtlpSink {
    OtlpSink::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2))
        .expect("an OTLP client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_through_a_receiver_outage_and_an_exporter_restart() {
    let node = ExportNode::new(u64::MAX);
    let out = node.dir.path().join("received.jsonl");
    let (receiver, port) = Receiver::start(0, &out, &[]);
    let exporter = node.export(Exporter::Otlp, otlp(port)).await;
    // A first run exports what is stored from its start on.
    node.publish(300, 300).await;
    until("300 records received", || received(&out).len() == 300).await;

    drop(receiver);
    node.publish(300, 300).await;
    until("the outage noticed", || {
        node.counter(Exporter::Otlp, ExportCount::Failed) > 0
    })
    .await;
    assert!(node.counter(Exporter::Otlp, ExportCount::LagRecords) > 0);
    let _receiver = Receiver::start(port, &out, &[]).0;
    until("every record received after the outage", || {
        received(&out).len() == 600
    })
    .await;
    assert!(node.counter(Exporter::Otlp, ExportCount::Retried) > 0);

    // The exporter stops and starts again: it resumes after its saved cursor.
    exporter.abort();
    let _ = exporter.await;
    node.publish(100, 100).await;
    let exporter = node.export(Exporter::Otlp, otlp(port)).await;
    until("the records stored while it was down", || {
        received(&out).len() == 700
    })
    .await;
    let got = received(&out);
    let all: Vec<u64> = node.cursors().collect();
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        all,
        "every record, none else"
    );
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    // Only a batch acknowledged as the exporter was aborted can come again.
    assert!(twice.len() <= 100, "sent twice: {twice:?}");
    assert_eq!(node.counter(Exporter::Otlp, ExportCount::Skipped), 0);
    assert_eq!(node.counter(Exporter::Otlp, ExportCount::Rejected), 0);
    until("no lag", || {
        node.counter(Exporter::Otlp, ExportCount::LagRecords) == 0
    })
    .await;

    // What arrived is what the node holds, in OpenTelemetry's names.
    let text = std::fs::read_to_string(&out).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["attributes"]["source.address"], "198.18.0.1");
    assert_eq!(first["attributes"]["destination.port"], 53);
    assert_eq!(first["attributes"]["network.transport"], "udp");
    assert_eq!(first["attributes"]["flowd.verdict"], "forwarded");
    assert_eq!(first["resource"]["k8s.node.name"], "node-1");
    assert_eq!(first["event_name"], "flowd.flow");
    exporter.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_and_records_retention_removed_first_are_counted() {
    let node = ExportNode::new(20_000);
    let out = node.dir.path().join("received.jsonl");
    let (receiver, port) = Receiver::start(0, &out, &["--reject-multiple", "10"]);
    let exporter = node.export(Exporter::Otlp, otlp(port)).await;
    node.publish(50, 50).await;
    until("50 records acknowledged", || {
        node.counter(Exporter::Otlp, ExportCount::Sent)
            + node.counter(Exporter::Otlp, ExportCount::Rejected)
            == 50
    })
    .await;
    let refused = node.cursors().filter(|c| c % 10 == 0).count() as u64;
    assert_eq!(node.counter(Exporter::Otlp, ExportCount::Rejected), refused);
    assert_eq!(received(&out).len() as u64, 50 - refused);

    // The exporter is stopped while the history outgrows its size bound: retention removes
    // records it never read.
    exporter.abort();
    let _ = exporter.await;
    drop(receiver);
    node.publish(400, 400).await;
    let removed = node
        .hub
        .store()
        .enforce_retention(SystemTime::now())
        .unwrap();
    assert!(removed > 100, "retention removed {removed}");
    let _receiver = Receiver::start(port, &out, &[]).0;
    let exporter = node.export(Exporter::Otlp, otlp(port)).await;
    let held = node.cursors();
    until("what the node still holds arrives", || {
        let got = received(&out);
        held.clone().all(|c| got.contains_key(&c))
    })
    .await;
    assert_eq!(
        node.counter(Exporter::Otlp, ExportCount::Skipped),
        removed - 50
    );
    let got = received(&out);
    assert_eq!(
        got.keys().filter(|c| **c > 50).count() as u64,
        400 - (removed - 50),
        "every record of the 400 is delivered or counted as skipped"
    );
    exporter.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_the_filters_match_is_exported_and_the_cursor_passes_the_rest() {
    let node = ExportNode::new(u64::MAX);
    let out = node.dir.path().join("received.jsonl");
    let (_receiver, port) = Receiver::start(0, &out, &[]);
    // The settings' form: a GetFlows filter as JSON.
    let allow: flowd::config::FlowFilterSetting =
        r#"{"sourcePort": [10003, 10004]}"#.parse().unwrap();
    let deny: flowd::config::FlowFilterSetting = r#"{"sourcePort": [10004]}"#.parse().unwrap();
    let matcher = flowd::query::FlowMatcher::new(&[allow.0], &[deny.0]).unwrap();
    let exporter = node
        .export_matching(Exporter::Otlp, otlp(port), matcher)
        .await;
    node.publish(100, 10).await;
    until("the cursor passed every record", || {
        node.counter(Exporter::Otlp, ExportCount::LagRecords) == 0
            && node.counter(Exporter::Otlp, ExportCount::Sent) == 10
    })
    .await;
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 10);
    assert!(
        text.lines()
            .all(|line| line.contains(r#""source.port": 10003"#)),
        "{text}"
    );
    exporter.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_past_the_end_of_a_new_history_exports_all_of_it() {
    let node = ExportNode::new(u64::MAX);
    let out = node.dir.path().join("received.jsonl");
    let (_receiver, port) = Receiver::start(0, &out, &[]);
    node.publish(50, 50).await;
    // The cursor of a history that was moved aside (damaged) and replaced by this one.
    std::fs::write(node.cursor_file(Exporter::Otlp), "10000\n").unwrap();
    let exporter = node.export(Exporter::Otlp, otlp(port)).await;
    until("the new history's records received", || {
        received(&out).len() == 50
    })
    .await;
    exporter.abort();
}
