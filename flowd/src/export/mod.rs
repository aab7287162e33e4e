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
