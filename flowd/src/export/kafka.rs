//! Flows into a Kafka topic through rskafka, a pure-Rust client (no librdkafka, no C toolchain):
//! one message per flow record, produced with acknowledgement from all in-sync replicas.
//!
//! Message: the value is the record as a `flowd.v1.Flow` protobuf (or its proto3 JSON mapping,
//! `kafkaFormat: json`); the key is the connection (`NODE PROTOCOL SOURCE DESTINATION`, as
//! text), and the partition is chosen from the key as Kafka's own default partitioner does
//! (murmur2 of the key, positive, modulo the partition count), so one connection's records stay
//! in one partition, in order; the timestamp is the flow's end; headers name the format
//! (`content-type`) and the node (`flowd-node`).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use prost::Message as _;
use rskafka::{
    client::{
        error::{Error as KafkaError, ProtocolError},
        partition::{Compression, PartitionClient, UnknownTopicHandling},
        Client, ClientBuilder, Credentials, SaslConfig,
    },
    record::Record,
    BackoffConfig,
};

use super::{
    delivery::{Accepted, Encode, Sink, SinkError},
    Address,
};
use crate::{
    proto::{protocol_word, v1 as pb},
    store::time_ns,
};

/// How a record is written into a message's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaFormat {
    /// A `flowd.v1.Flow` protobuf message.
    #[default]
    Protobuf,
    /// The proto3 JSON mapping of `flowd.v1.Flow`.
    Json,
}

/// Compression of produced batches; only codecs with pure-Rust implementations (lz4 and zstd
/// would bring C libraries into the static build). Gzip by default: every consumer reads it.
/// rskafka writes snappy as raw blocks, which kafka-python did not read back through the test
/// broker (Java clients write snappy in xerial framing), so snappy is a choice, not the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaCompression {
    None,
    #[default]
    Gzip,
    Snappy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaSasl {
    Plain,
    // As clap spells them (`scram-sha-256`), not serde's kebab case (`scram-sha256`).
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

pub struct KafkaSettings {
    pub brokers: Vec<String>,
    pub topic: String,
    pub format: KafkaFormat,
    pub compression: KafkaCompression,
    /// A produce round (every partition of a batch) unanswered this long fails.
    pub timeout: Duration,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<(KafkaSasl, String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("{setting} {path}: {source}")]
    File {
        setting: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{setting} {path}: {problem}; give a PEM file")]
    Pem {
        setting: &'static str,
        path: std::path::PathBuf,
        problem: String,
    },
    #[error("kafkaTlsCert and kafkaTlsKey go together: give both or neither")]
    HalfClientCertificate,
    #[error("the Kafka TLS settings: {0}")]
    Tls(#[from] rustls::Error),
    #[error(
        "kafkaSaslMechanism needs kafkaSaslUsername and kafkaSaslPasswordFile (a file holding the \
         password)"
    )]
    SaslCredentials,
}

/// The TLS client configuration for the brokers: trusting `ca`, presenting `cert` and `key`
/// when given.
pub fn tls_config(
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Arc<rustls::ClientConfig>, KafkaSetupError> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
    let pem =
        |setting: &'static str, path: &std::path::Path, problem: String| KafkaSetupError::Pem {
            setting,
            path: path.to_owned(),
            problem,
        };
    let certificates = |setting: &'static str, path: &std::path::Path| {
        let bytes = std::fs::read(path).map_err(|source| KafkaSetupError::File {
            setting,
            path: path.to_owned(),
            source,
        })?;
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| pem(setting, path, e.to_string()))?;
        if certificates.is_empty() {
            return Err(pem(setting, path, "no certificate in it".into()));
        }
        Ok(certificates)
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates("kafkaTlsCa", ca)? {
        roots
            .add(certificate)
            .map_err(|e| pem("kafkaTlsCa", ca, e.to_string()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates("kafkaTlsCert", cert)?;
            let bytes = std::fs::read(key).map_err(|source| KafkaSetupError::File {
                setting: "kafkaTlsKey",
                path: key.to_owned(),
                source,
            })?;
            let key_der = PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| pem("kafkaTlsKey", key, e.to_string()))?;
            builder.with_client_auth_cert(chain, key_der)?
        }
    };
    Ok(Arc::new(config))
}

pub struct KafkaSink {
    settings: KafkaSettings,
    /// Connected lazily, and again after a failure: brokers may be down when the agent starts.
    connected: Option<Connected>,
}

struct Connected {
    /// Kept for the metadata and connections the partition clients share.
    _client: Client,
    /// The topic's partitions, by id, ascending.
    partitions: Vec<(i32, PartitionClient)>,
}

impl KafkaSink {
    pub fn new(settings: KafkaSettings) -> Self {
        Self {
            settings,
            connected: None,
        }
    }

    async fn connect(&self) -> Result<Connected, SinkError> {
        let unavailable = |what: &str, err: KafkaError| {
            SinkError::Unavailable(format!(
                "{what} ({}): {err}",
                self.settings.brokers.join(",")
            ))
        };
        let mut builder = ClientBuilder::new(self.settings.brokers.clone())
            .client_id("flowd")
            // rskafka retries inside a call; the delivery loop owns retries and counts them.
            .backoff_config(BackoffConfig {
                deadline: Some(self.settings.timeout),
                ..BackoffConfig::default()
            });
        if let Some(tls) = &self.settings.tls {
            builder = builder.tls_config(tls.clone());
        }
        if let Some((mechanism, username, password)) = &self.settings.sasl {
            let credentials = Credentials::new(username.clone(), password.clone());
            builder = builder.sasl_config(match mechanism {
                KafkaSasl::Plain => SaslConfig::Plain(credentials),
                KafkaSasl::ScramSha256 => SaslConfig::ScramSha256(credentials),
                KafkaSasl::ScramSha512 => SaslConfig::ScramSha512(credentials),
            });
        }
        let client = builder
            .build()
            .await
            .map_err(|e| unavailable("connecting to the Kafka brokers", e))?;
        let topic = client
            .list_topics()
            .await
            .map_err(|e| unavailable("listing the Kafka topics", e))?
            .into_iter()
            .find(|t| t.name == self.settings.topic)
            .ok_or_else(|| {
                SinkError::Unavailable(format!(
                    "the Kafka topic {:?} does not exist; create it (with the partitions and \
                     replicas it needs) or let the brokers create topics",
                    self.settings.topic
                ))
            })?;
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for id in topic.partitions {
            let partition = client
                .partition_client(self.settings.topic.clone(), id, UnknownTopicHandling::Retry)
                .await
                .map_err(|e| unavailable("finding the partition leaders", e))?;
            partitions.push((id, partition));
        }
        if partitions.is_empty() {
            return Err(SinkError::Unavailable(format!(
                "the Kafka topic {:?} has no partitions",
                self.settings.topic
            )));
        }
        Ok(Connected {
            _client: client,
            partitions,
        })
    }

    async fn produce(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        if self.connected.is_none() {
            self.connected = Some(self.connect().await?);
        }
        let Some(connected) = &self.connected else {
            return Err(SinkError::Unavailable("not connected".into()));
        };
        let partitions = connected.partitions.len();
        let mut by_partition: BTreeMap<usize, Vec<&Message>> = BTreeMap::new();
        for message in batch {
            by_partition
                .entry(message.key_hash as usize % partitions.max(1))
                .or_default()
                .push(message);
        }
        let compression = match self.settings.compression {
            KafkaCompression::None => Compression::NoCompression,
            KafkaCompression::Gzip => Compression::Gzip,
            KafkaCompression::Snappy => Compression::Snappy,
        };
        let rounds = by_partition.iter().map(|(index, messages)| {
            let partition = &connected.partitions[*index].1;
            produce_split(partition, messages, compression)
        });
        futures::future::try_join_all(rounds).await.map(|_| ())
    }
}

/// A record as a message, with its key's hash (the partition is that modulo the partitions).
#[derive(Clone)]
pub struct Message {
    key_hash: u32,
    record: Record,
}

/// Makes each record's message (key, value, headers): on the exporter's reader, while the
/// previous batch is produced.
pub struct MessageEncoder {
    format: KafkaFormat,
}

impl Encode for MessageEncoder {
    type Encoded = Vec<Message>;

    fn encode(&self, batch: &[Arc<pb::Flow>]) -> Result<Vec<Message>, SinkError> {
        batch
            .iter()
            .map(|flow| {
                let key = connection_key(flow).into_bytes();
                Ok(Message {
                    key_hash: key_hash(&key),
                    record: message(self.format, flow, key)?,
                })
            })
            .collect()
    }
}

impl Sink for KafkaSink {
    type Encoder = MessageEncoder;

    fn encoder(&self) -> MessageEncoder {
        MessageEncoder {
            format: self.settings.format,
        }
    }

    async fn send(&mut self, batch: &Vec<Message>, _records: usize) -> Result<Accepted, SinkError> {
        let result = match tokio::time::timeout(self.settings.timeout, self.produce(batch)).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::Unavailable(format!(
                "no answer from the Kafka brokers within {:?}",
                self.settings.timeout
            ))),
        };
        match result {
            Ok(()) => Ok(Accepted::default()),
            Err(SinkError::Unavailable(reason)) => {
                // Leaders move and brokers restart: find them again before the retry.
                self.connected = None;
                Err(SinkError::Unavailable(reason))
            }
            Err(rejected) => Err(rejected),
        }
    }
}

/// Produces `messages` to one partition; a list the broker finds too large is split in halves
/// and each half produced, so only a single record too large for the broker is refused.
fn produce_split<'a>(
    partition: &'a PartitionClient,
    messages: &'a [&'a Message],
    compression: Compression,
) -> futures::future::BoxFuture<'a, Result<(), SinkError>> {
    Box::pin(async move {
        // rskafka takes the records it produces: a retry sends copies again.
        let records = messages.iter().map(|m| m.record.clone()).collect();
        match partition.produce(records, compression).await {
            Ok(_) => Ok(()),
            Err(KafkaError::ServerError {
                protocol_error: ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge,
                ..
            }) if messages.len() > 1 => {
                let (first, second) = messages.split_at(messages.len() / 2);
                produce_split(partition, first, compression).await?;
                produce_split(partition, second, compression).await
            }
            Err(KafkaError::ServerError {
                protocol_error:
                    protocol_error @ (ProtocolError::MessageTooLarge
                    | ProtocolError::RecordListTooLarge
                    | ProtocolError::InvalidRecord
                    | ProtocolError::CorruptMessage),
                ..
            }) => Err(SinkError::Rejected(format!(
                "partition {}: {protocol_error}",
                partition.partition()
            ))),
            Err(err) => Err(SinkError::Unavailable(format!(
                "producing to partition {}: {err}",
                partition.partition()
            ))),
        }
    })
}

/// A record's message, its key already made (`connection_key`).
fn message(format: KafkaFormat, flow: &pb::Flow, key: Vec<u8>) -> Result<Record, SinkError> {
    let (value, content_type) = match format {
        KafkaFormat::Protobuf => (
            flow.encode_to_vec(),
            "application/x-protobuf; messageType=flowd.v1.Flow",
        ),
        KafkaFormat::Json => (
            crate::proto::flow_json(flow)
                .map_err(|e| SinkError::Rejected(format!("encoding record {}: {e}", flow.cursor)))?
                .into_bytes(),
            "application/json",
        ),
    };
    let end_ns = flow.end_time.as_ref().map_or(0, time_ns);
    Ok(Record {
        key: Some(key),
        value: Some(value),
        headers: BTreeMap::from([
            ("content-type".to_owned(), content_type.as_bytes().to_vec()),
            ("flowd-node".to_owned(), flow.node.as_bytes().to_vec()),
        ]),
        timestamp: chrono::DateTime::from_timestamp_nanos(
            i64::try_from(end_ns).unwrap_or(i64::MAX),
        ),
    })
}

/// The connection a record belongs to, as its messages' key: a connection's records (its
/// reports, its end) share it.
pub fn connection_key(flow: &pb::Flow) -> String {
    format!(
        "{} {} {} {}",
        flow.node,
        protocol_word(flow.protocol),
        Address(&flow.source),
        Address(&flow.destination)
    )
}

/// Kafka's default partitioner: the positive murmur2 hash of the key modulo the partitions.
pub fn partition_of(key: &[u8], partitions: usize) -> usize {
    key_hash(key) as usize % partitions.max(1)
}

/// The positive murmur2 hash of a key, as Kafka's default partitioner takes it.
fn key_hash(key: &[u8]) -> u32 {
    murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_of_a_key_is_the_one_kafkas_own_partitioner_picks() {
        // Values of the Java client's murmur2 test, which kafka-python's partitioner also gives.
        assert_eq!(
            murmur2::murmur2(b"21", murmur2::KAFKA_SEED) as i32,
            -973932308
        );
        assert_eq!(
            murmur2::murmur2(b"foobar", murmur2::KAFKA_SEED) as i32,
            -790332482
        );
        assert_eq!(
            partition_of(b"foobar", 3),
            (-790332482i32 & 0x7fff_ffff) as usize % 3
        );
    }

    #[test]
    fn a_connections_records_share_a_key() {
        let flow = |cursor| pb::Flow {
            cursor,
            node: "node-a".into(),
            protocol: pb::Protocol::Tcp as i32,
            source: Some(pb::Endpoint {
                ip: "198.18.0.1".into(),
                port: 40000,
                ..Default::default()
            }),
            destination: Some(pb::Endpoint {
                ip: "198.18.0.2".into(),
                port: 7070,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            connection_key(&flow(1)),
            "node-a TCP 198.18.0.1:40000 198.18.0.2:7070"
        );
        assert_eq!(connection_key(&flow(1)), connection_key(&flow(2)));
    }

    #[test]
    fn an_ipv6_endpoint_keeps_its_port_apart() {
        let flow = super::super::ipv6_udp_flow();
        assert_eq!(
            connection_key(&flow),
            "node-a UDP [fd00::1]:53000 [fd00::2]:53"
        );
    }
}
