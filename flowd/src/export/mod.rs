//! Sinks that copy flow records out of the node: a JSON-lines file for log shippers, and
//! exporters that deliver at least once to the systems a platform team runs (OTLP, Kafka).

mod cursor;
mod delivery;
mod file;
mod kafka;
mod otlp;

pub use cursor::CursorFile;
pub use delivery::{run as run_delivery, Accepted, Delivery, Encode, Sink, SinkError};
pub use file::{run as run_file_sink, FileSink, FileSinkError};
pub use kafka::{
    connection_key as kafka_key, partition_of as kafka_partition_of,
    tls_config as kafka_tls_config, KafkaCompression, KafkaFormat, KafkaSasl, KafkaSettings,
    KafkaSetupError, KafkaSink,
};
pub use otlp::{
    encode_request as otlp_encode_request, log_record as otlp_log_record, request as otlp_request,
    OtlpError, OtlpSink,
};

use crate::proto::v1 as pb;

/// An endpoint the way the exporters' texts (OTLP body, Kafka key) name it; nothing for none.
struct Address<'a>(&'a Option<pb::Endpoint>);

impl std::fmt::Display for Address<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(e) => crate::proto::EndpointText {
                ip: &e.ip,
                port: e.port,
            }
            .fmt(f),
            None => Ok(()),
        }
    }
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
