//! Sinks that copy flow records out of the node: a JSON-lines file for log shippers, and
//! exporters that deliver at least once to the systems a platform team runs (OTLP, Kafka).

mod cursor;
mod delivery;
mod file;
mod kafka;
mod otlp;

pub use cursor::CursorFile;
pub use delivery::{run as run_delivery, Accepted, Delivery, Sink, SinkError};
pub use file::{run as run_file_sink, FileSink, FileSinkError};
pub use kafka::{
    connection_key as kafka_key, partition_of as kafka_partition_of,
    tls_config as kafka_tls_config, KafkaCompression, KafkaFormat, KafkaSasl, KafkaSettings,
    KafkaSetupError, KafkaSink,
};
pub use otlp::{log_record as otlp_log_record, request as otlp_request, OtlpError, OtlpSink};

use crate::proto::v1 as pb;

/// An endpoint the way the exporters' texts (OTLP body, Kafka key) name it.
fn address(endpoint: &Option<pb::Endpoint>) -> String {
    endpoint
        .as_ref()
        .map_or_else(String::new, |e| crate::proto::endpoint_text(&e.ip, e.port))
}

/// A UDP exchange between two IPv6 addresses on node-a, for the exporters' address tests.
#[cfg(test)]
fn ipv6_udp_flow() -> pb::Flow {
    pb::Flow {
        node: "node-a".into(),
        protocol: pb::Protocol::Udp as i32,
        source: Some(pb::Endpoint {
            ip: "fd00::1".into(),
            port: 53000,
            ..Default::default()
        }),
        destination: Some(pb::Endpoint {
            ip: "fd00::2".into(),
            port: 53,
            ..Default::default()
        }),
        ..Default::default()
    }
}
