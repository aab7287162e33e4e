//! The Kafka exporter against a real Kafka-protocol broker (crates.io's tansu, durable on
//! sqlite, installed by setup), read back with kafka-python (`tests/receivers/kafka_tool.py`):
//! every record the node holds arrives through a broker killed and restarted mid-stream, each
//! connection's records in one partition (the one Kafka's default partitioner picks for its
//! key) and in order; both value formats decode.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use base64::Engine as _;
use flowd::kafka_broker::KafkaBroker;
use flowd::{
    export::{KafkaCompression, KafkaFormat, KafkaSettings, KafkaSink},
    proto::v1 as pb,
    telemetry::{ExportCount, Exporter},
};
use prost::Message as _;
use support::{
    export::{until, ExportNode},
    free_port,
};

const TOPIC: &str = "flowd.flows";

fn kafka_tool(args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/receivers/kafka_tool.py");
    let status = Command::new("python3")
        .arg(script)
        .args(args)
        .status()
        .expect("python3 with kafka-python (cargo xtask setup)");
    assert!(status.success(), "kafka_tool.py {args:?}: {status}");
}

struct Message {
    partition: u64,
    key: String,
    value: Vec<u8>,
    headers: serde_json::Value,
    default_partition: u64,
}

/// Every message of the topic, partition by partition in offset order, read by kafka-python.
fn consume(broker: &str, out: &Path) -> Vec<Message> {
    kafka_tool(&["consume", broker, TOPIC, out.to_str().unwrap()]);
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|line| {
            let m: serde_json::Value = serde_json::from_str(line).unwrap();
            Message {
                partition: m["partition"].as_u64().unwrap(),
                key: m["key"].as_str().unwrap().to_owned(),
                value: base64::engine::general_purpose::STANDARD
                    .decode(m["value"].as_str().unwrap())
                    .unwrap(),
                headers: m["headers"].clone(),
                default_partition: m["default_partition"].as_u64().unwrap(),
            }
        })
        .collect()
}

fn kafka(port: u16, format: KafkaFormat) -> KafkaSink {
    KafkaSink::new(KafkaSettings {
        brokers: vec![format!("127.0.0.1:{port}")],
        topic: TOPIC.into(),
        format,
        compression: KafkaCompression::default(),
        timeout: Duration::from_secs(3),
        tls: None,
        sasl: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_through_a_broker_restart_each_connection_in_order() {
    let node = ExportNode::new(u64::MAX);
    let port = free_port();
    let broker_address = format!("127.0.0.1:{port}");
    let broker_dir = tempfile::tempdir().unwrap();
    let broker = KafkaBroker::start(port, Some(broker_dir.path()));
    tokio::task::block_in_place(|| kafka_tool(&["create-topic", &broker_address, TOPIC, "3"]));
    let exporter = node
        .export(Exporter::Kafka, kafka(port, KafkaFormat::Protobuf))
        .await;
    let sent = || node.counter(Exporter::Kafka, ExportCount::Sent);
    node.publish(300, 40).await;
    until("300 records acknowledged", || sent() >= 300).await;

    // The broker dies mid-stream; what the node captures meanwhile waits in its history.
    drop(broker);
    node.publish(300, 40).await;
    until("the outage noticed", || {
        node.counter(Exporter::Kafka, ExportCount::Failed) > 0
    })
    .await;
    let _broker = KafkaBroker::start(port, Some(broker_dir.path()));
    until("every record acknowledged after the restart", || {
        node.counter(Exporter::Kafka, ExportCount::LagRecords) == 0 && sent() >= 600
    })
    .await;
    exporter.abort();

    let out = node.dir.path().join("consumed.jsonl");
    let messages = tokio::task::block_in_place(|| consume(&broker_address, &out));
    let mut arrived: BTreeMap<u64, u32> = BTreeMap::new();
    // A connection's records, in the order its partition holds them.
    let mut by_key: BTreeMap<String, (u64, Vec<u64>)> = BTreeMap::new();
    for message in &messages {
        let flow = pb::Flow::decode(message.value.as_slice()).expect("a flowd.v1.Flow");
        *arrived.entry(flow.cursor).or_default() += 1;
        assert_eq!(message.key, flowd::export::kafka_key(&flow));
        assert_eq!(
            message.partition, message.default_partition,
            "the partition Kafka's default partitioner picks for {:?}",
            message.key
        );
        assert_eq!(message.headers["flowd-node"], "node-1");
        let (partition, cursors) = by_key
            .entry(message.key.clone())
            .or_insert((message.partition, Vec::new()));
        assert_eq!(
            *partition, message.partition,
            "one partition per connection"
        );
        cursors.push(flow.cursor);
    }
    let all: BTreeSet<u64> = node.cursors().collect();
    assert_eq!(
        arrived.keys().copied().collect::<BTreeSet<_>>(),
        all,
        "every record the node holds, none else"
    );
    let twice = arrived.values().filter(|n| **n > 1).count();
    // Only a batch the broker stored as it died, before answering, can come again.
    assert!(twice <= 100, "{twice} records arrived twice");
    assert_eq!(by_key.len(), 40);
    let partitions: BTreeSet<u64> = by_key.values().map(|(p, _)| *p).collect();
    assert!(
        partitions.len() > 1,
        "40 connections over 3 partitions: {partitions:?}"
    );
    for (key, (_, cursors)) in &by_key {
        // First arrivals in order; a batch sent again repeats a run of them.
        let mut first: Vec<u64> = Vec::new();
        for cursor in cursors {
            if !first.contains(cursor) {
                first.push(*cursor);
            }
        }
        assert!(first.windows(2).all(|w| w[0] < w[1]), "{key}: {cursors:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_messages_are_the_proto3_json_of_the_records() {
    let node = ExportNode::new(u64::MAX);
    let port = free_port();
    let broker_address = format!("127.0.0.1:{port}");
    let broker_dir = tempfile::tempdir().unwrap();
    let _broker = KafkaBroker::start(port, Some(broker_dir.path()));
    tokio::task::block_in_place(|| kafka_tool(&["create-topic", &broker_address, TOPIC, "1"]));
    let exporter = node
        .export(Exporter::Kafka, kafka(port, KafkaFormat::Json))
        .await;
    node.publish(20, 20).await;
    until("20 records acknowledged", || {
        node.counter(Exporter::Kafka, ExportCount::Sent) == 20
    })
    .await;
    exporter.abort();
    let out = node.dir.path().join("consumed.jsonl");
    let messages = tokio::task::block_in_place(|| consume(&broker_address, &out));
    assert_eq!(messages.len(), 20);
    let cursors: BTreeSet<String> = messages
        .iter()
        .map(|m| {
            assert_eq!(m.headers["content-type"], "application/json");
            let flow: serde_json::Value = serde_json::from_slice(&m.value).expect("JSON");
            assert_eq!(flow["destination"]["port"], 53, "{flow}");
            assert_eq!(flow["protocol"], "PROTOCOL_UDP", "{flow}");
            // proto3 JSON writes 64-bit integers as strings.
            flow["cursor"].as_str().expect("cursor").to_owned()
        })
        .collect();
    let expected: BTreeSet<String> = node.cursors().map(|c| c.to_string()).collect();
    assert_eq!(cursors, expected);
}

/// A TLS proxy (Python's ssl module, client certificates required) in front of the broker;
/// killed on drop.
struct TlsProxy(std::process::Child);

impl TlsProxy {
    /// A proxy on a port of its own choosing (binding port 0, so no other test can take it
    /// first) in front of `target`; returns it and its port.
    fn start(target: u16, certificates: &Path) -> (Self, u16) {
        use std::io::BufRead as _;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/receivers/tls_proxy.py");
        let file = |name: &str| certificates.join(name);
        let mut child = Command::new("python3")
            .arg(script)
            .args(["0".to_owned(), target.to_string()])
            .args([file("server.pem"), file("server.key"), file("ca.pem")])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the TLS proxy");
        let stdout = child.stdout.take().expect("stdout");
        // Killed and waited for on drop, whatever happens next.
        let proxy = Self(child);
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the proxy's first line");
        let port = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the TLS proxy did not start: {line:?}"));
        (proxy, port)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_brokers_behind_tls_with_a_client_certificate_and_not_without() {
    let certificates = tempfile::tempdir().unwrap();
    support::tls::certificates(certificates.path());
    let broker_port = free_port();
    let (_proxy, proxy_port) = TlsProxy::start(broker_port, certificates.path());
    let broker_dir = tempfile::tempdir().unwrap();
    let plain = format!("127.0.0.1:{broker_port}");
    {
        let _broker = KafkaBroker::start(broker_port, Some(broker_dir.path()));
        tokio::task::block_in_place(|| kafka_tool(&["create-topic", &plain, TOPIC, "1"]));
    }
    // The same broker (its topic kept on disk) tells clients to come back through the proxy:
    // every connection the exporter makes is TLS.
    let broker = KafkaBroker::start_advertising(broker_port, proxy_port, Some(broker_dir.path()));
    let file = |name: &str| certificates.path().join(name);
    let settings = |client: Option<(&Path, &Path)>| KafkaSettings {
        brokers: vec![format!("127.0.0.1:{proxy_port}")],
        topic: TOPIC.into(),
        format: KafkaFormat::Protobuf,
        compression: KafkaCompression::default(),
        timeout: Duration::from_secs(3),
        tls: Some(flowd::export::kafka_tls_config(&file("ca.pem"), client).expect("TLS settings")),
        sasl: None,
    };

    // Without a client certificate the proxy refuses the handshake: nothing is acknowledged.
    let refused = ExportNode::new(u64::MAX);
    let exporter = refused
        .export(Exporter::Kafka, KafkaSink::new(settings(None)))
        .await;
    refused.publish(10, 10).await;
    until("the refusal counted", || {
        refused.counter(Exporter::Kafka, ExportCount::Failed) > 0
    })
    .await;
    assert_eq!(refused.counter(Exporter::Kafka, ExportCount::Sent), 0);
    exporter.abort();

    let node = ExportNode::new(u64::MAX);
    let (cert, key) = (file("client.pem"), file("client.key"));
    let exporter = node
        .export(
            Exporter::Kafka,
            KafkaSink::new(settings(Some((cert.as_path(), key.as_path())))),
        )
        .await;
    node.publish(50, 10).await;
    until("50 records acknowledged over TLS", || {
        node.counter(Exporter::Kafka, ExportCount::Sent) == 50
    })
    .await;
    exporter.abort();
    drop(broker);
    let _broker = KafkaBroker::start(broker_port, Some(broker_dir.path()));
    let out = node.dir.path().join("consumed.jsonl");
    let messages = tokio::task::block_in_place(|| consume(&plain, &out));
    assert_eq!(messages.len(), 50);
}
