//! Flows as OpenTelemetry log records, sent to an OTLP/gRPC receiver (a Collector) through
//! tonic with the official protobuf definitions (the `opentelemetry-proto` crate).
//!
//! One log record per flow record: its time is the flow's end, its observed time when the node
//! stored it; attributes use the OpenTelemetry semantic conventions where they name the fact
//! (`source.address`, `destination.port`, `network.transport`, `network.type`) and `flowd.*`
//! for the rest (endpoints' Kubernetes identity, verdict, outcome, drop reason, the deciding
//! policy and rule of each side, counters). The resource names the node (`k8s.node.name`) and
//! `service.name` "flowd".

use std::{sync::Arc, time::Duration};

use bytes::{BufMut as _, Bytes};
use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    resource::v1::Resource,
};
use tonic::transport::{Channel, Endpoint};

use super::{
    delivery::{Accepted, Encode, Sink, SinkError},
    Address,
};
use crate::{
    proto::{protocol_word, v1 as pb},
    store::time_ns,
};

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error(
        "otlpEndpoint {endpoint:?} is not a URL a gRPC client can use ({source}); give it as \
         http://HOST:PORT"
    )]
    Endpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error(
        "otlpEndpoint {0:?}: only http:// is supported (plain gRPC to a collector on the node or \
         in the cluster)"
    )]
    Scheme(String),
}

pub struct OtlpSink {
    client: tonic::client::Grpc<Channel>,
}

impl OtlpSink {
    /// A client for `endpoint` that connects when first used (and again after an outage); a
    /// call that takes longer than `timeout` fails and is retried.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, OtlpError> {
        if !endpoint.starts_with("http://") {
            return Err(OtlpError::Scheme(endpoint.to_owned()));
        }
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|source| OtlpError::Endpoint {
                endpoint: endpoint.to_owned(),
                source,
            })?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        Ok(Self {
            client: tonic::client::Grpc::new(channel).max_decoding_message_size(1 << 20),
        })
    }
}

impl Sink for OtlpSink {
    type Encoder = RequestEncoder;

    fn encoder(&self) -> RequestEncoder {
        RequestEncoder
    }

    async fn send(&mut self, request: &Bytes, _records: usize) -> Result<Accepted, SinkError> {
        let unavailable = |status: tonic::Status| {
            SinkError::Unavailable(format!("{:?}: {}", status.code(), status.message()))
        };
        self.client
            .ready()
            .await
            .map_err(|e| SinkError::Unavailable(format!("connecting: {e}")))?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH);
        let response = self
            .client
            .unary(
                tonic::Request::new(request.clone()),
                path,
                EncodedRequestCodec,
            )
            .await;
        match response {
            Ok(response) => Ok(Accepted {
                rejected: response
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| u64::try_from(p.rejected_log_records).unwrap_or(0)),
            }),
            // The receiver says the records themselves are malformed: sending them again
            // cannot help (the OTLP specification's non-retryable code). Everything else
            // (unavailable, overloaded, timed out, misconfigured) waits and retries.
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                Err(SinkError::Rejected(status.message().to_owned()))
            }
            Err(status) => Err(unavailable(status)),
        }
    }
}

/// The method the generated `LogsServiceClient::export` calls.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Encodes a batch as an `ExportLogsServiceRequest`, straight from the records: building the
/// official types first (some 40 attributes a record, each with owned strings) cost most of the
/// exporter's time in allocations.
pub struct RequestEncoder;

impl Encode for RequestEncoder {
    type Encoded = Bytes;

    fn encode(&self, batch: &[Arc<pb::Flow>]) -> Result<Bytes, SinkError> {
        Ok(encode_request(batch))
    }
}

/// Requests go out as already encoded, responses are decoded as usual.
#[derive(Clone, Copy, Default)]
struct EncodedRequestCodec;

struct BytesEncoder;

impl tonic::codec::Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Codec for EncodedRequestCodec {
    type Encode = Bytes;
    type Decode = ExportLogsServiceResponse;
    type Encoder = BytesEncoder;
    type Decoder = tonic_prost::ProstDecoder<ExportLogsServiceResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// One request for a batch: a resource per node (an agent's batch has one). The same message
/// as `request` builds, encoded without it.
pub fn encode_request(batch: &[Arc<pb::Flow>]) -> Bytes {
    // Records by node, the nodes in the order they first come.
    let mut nodes: Vec<(&str, Vec<&pb::Flow>)> = Vec::new();
    let mut node_index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for flow in batch {
        let index = *node_index.entry(&flow.node).or_insert_with(|| {
            nodes.push((&flow.node, Vec::new()));
            nodes.len() - 1
        });
        nodes[index].1.push(flow);
    }
    let mut request = Vec::new();
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut body = String::new();
    for (node, flows) in nodes {
        records.clear();
        for flow in flows {
            record.clear();
            encode_log_record(flow, &mut record, &mut body);
            wire::message(2, &record, &mut records);
        }
        // ScopeLogs: scope (1: name 1, version 2), log_records (2).
        let mut scope = Vec::new();
        let mut instrumentation = Vec::new();
        wire::string(1, "flowd", &mut instrumentation);
        wire::string(2, env!("CARGO_PKG_VERSION"), &mut instrumentation);
        wire::message(1, &instrumentation, &mut scope);
        // ResourceLogs: resource (1: attributes 1), scope_logs (2).
        let mut resource = Vec::new();
        let mut attributes = Vec::new();
        let mut writer = wire::Attributes::new(1, &mut attributes);
        writer.text("service.name", "flowd");
        writer.text("k8s.node.name", node);
        wire::message(1, &attributes, &mut resource);
        // The records are copied once, after the headers their lengths decide.
        let scope_len = scope.len() + records.len();
        wire::header(2, scope_len, &mut resource);
        // ExportLogsServiceRequest: resource_logs (1).
        let resource_len = resource.len() + scope_len;
        request.reserve(resource_len + 16);
        wire::header(1, resource_len, &mut request);
        request.extend_from_slice(&resource);
        request.extend_from_slice(&scope);
        request.extend_from_slice(&records);
    }
    Bytes::from(request)
}

/// One request for a batch as the official types (what `encode_request` encodes).
pub fn request(batch: &[Arc<pb::Flow>]) -> ExportLogsServiceRequest {
    let mut by_node: Vec<(&str, Vec<LogRecord>)> = Vec::new();
    for flow in batch {
        let record = log_record(flow);
        match by_node.iter_mut().find(|(node, _)| *node == flow.node) {
            Some((_, records)) => records.push(record),
            None => by_node.push((&flow.node, vec![record])),
        }
    }
    ExportLogsServiceRequest {
        resource_logs: by_node
            .into_iter()
            .map(|(node, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![text("service.name", "flowd"), text("k8s.node.name", node)],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "flowd".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// Where a record's attributes go: the official types, or their encoding.
trait Attributes {
    fn text(&mut self, key: &str, value: &str);
    /// Text given in upper case (a proto enum's name), as lower case.
    fn lowercase(&mut self, key: &str, value: &str);
    fn int(&mut self, key: &str, value: i64);
    fn boolean(&mut self, key: &str, value: bool);
}

impl Attributes for Vec<KeyValue> {
    fn text(&mut self, key: &str, value: &str) {
        self.push(text(key, value));
    }

    fn lowercase(&mut self, key: &str, value: &str) {
        self.push(text(key, &value.to_ascii_lowercase()));
    }

    fn int(&mut self, key: &str, value: i64) {
        self.push(int(key, value));
    }

    fn boolean(&mut self, key: &str, value: bool) {
        self.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(Value::BoolValue(value)),
            }),
            ..Default::default()
        });
    }
}

/// Protobuf encoding of the few OTLP messages the exporter writes, with prost's primitives.
mod wire {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

    /// A length-delimited field holding `bytes` (a message's encoding or a string).
    pub fn message(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
        header(tag, bytes.len(), out);
        out.extend_from_slice(bytes);
    }

    /// The start of a length-delimited field of `len` bytes, which come next.
    pub fn header(tag: u32, len: usize, out: &mut Vec<u8>) {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
    }

    pub fn string(tag: u32, value: &str, out: &mut Vec<u8>) {
        message(tag, value.as_bytes(), out);
    }

    pub fn fixed64(tag: u32, value: u64, out: &mut Vec<u8>) {
        if value != 0 {
            encode_key(tag, WireType::SixtyFourBit, out);
            out.extend_from_slice(&value.to_le_bytes());
        }
    }

    pub fn varint(tag: u32, value: u64, out: &mut Vec<u8>) {
        if value != 0 {
            encode_key(tag, WireType::Varint, out);
            encode_varint(value, out);
        }
    }

    fn delimited_len(tag: u32, len: usize) -> usize {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }

    /// `AnyValue` fields: string_value (1), bool_value (2), int_value (3).
    enum Any<'a> {
        Text(&'a str),
        /// Text written in lower case (ASCII: as long as the text).
        Lower(&'a str),
        Bool(bool),
        Int(i64),
    }

    impl Any<'_> {
        fn encoded_len(&self) -> usize {
            match self {
                Any::Text(text) | Any::Lower(text) => delimited_len(1, text.len()),
                Any::Bool(_) => key_len(2) + 1,
                // int64: a negative number is its two's complement, ten bytes.
                Any::Int(n) => key_len(3) + encoded_len_varint(*n as u64),
            }
        }

        fn encode(&self, out: &mut Vec<u8>) {
            match self {
                Any::Text(text) => string(1, text, out),
                Any::Lower(text) => {
                    encode_key(1, WireType::LengthDelimited, out);
                    encode_varint(text.len() as u64, out);
                    out.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
                }
                Any::Bool(b) => {
                    encode_key(2, WireType::Varint, out);
                    encode_varint(u64::from(*b), out);
                }
                Any::Int(n) => {
                    encode_key(3, WireType::Varint, out);
                    encode_varint(*n as u64, out);
                }
            }
        }
    }

    /// Repeated `KeyValue` fields (key 1, value 2) under `tag`, written as they come.
    pub struct Attributes<'a> {
        tag: u32,
        out: &'a mut Vec<u8>,
    }

    impl<'a> Attributes<'a> {
        pub fn new(tag: u32, out: &'a mut Vec<u8>) -> Self {
            Self { tag, out }
        }

        fn push(&mut self, key: &str, value: Any<'_>) {
            let value_len = value.encoded_len();
            let len = delimited_len(1, key.len()) + delimited_len(2, value_len);
            encode_key(self.tag, WireType::LengthDelimited, self.out);
            encode_varint(len as u64, self.out);
            string(1, key, self.out);
            encode_key(2, WireType::LengthDelimited, self.out);
            encode_varint(value_len as u64, self.out);
            value.encode(self.out);
        }
    }

    /// An `AnyValue` holding text, as the field `tag`.
    pub fn text_value(tag: u32, value: &str, out: &mut Vec<u8>) {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(delimited_len(1, value.len()) as u64, out);
        string(1, value, out);
    }

    impl super::Attributes for Attributes<'_> {
        fn text(&mut self, key: &str, value: &str) {
            self.push(key, Any::Text(value));
        }

        fn lowercase(&mut self, key: &str, value: &str) {
            self.push(key, Any::Lower(value));
        }

        fn int(&mut self, key: &str, value: i64) {
            self.push(key, Any::Int(value));
        }

        fn boolean(&mut self, key: &str, value: bool) {
            self.push(key, Any::Bool(value));
        }
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// An enum value's proto name without its type prefix (`VERDICT_DENIED` -> `DENIED`), which
/// the attributes give in lower case.
fn enum_word<'a>(name: &'a str, prefix: &str) -> &'a str {
    name.strip_prefix(prefix).unwrap_or(name)
}

/// Attribute keys, spelled out once per side: a record's 40-odd keys cost no formatting.
struct EndpointKeys {
    address: &'static str,
    port: &'static str,
    kind: &'static str,
    namespace: &'static str,
    pod: &'static str,
    workload_kind: &'static str,
    workload_name: &'static str,
    node: &'static str,
    services: &'static str,
}

macro_rules! endpoint_keys {
    ($side:literal) => {
        EndpointKeys {
            address: concat!($side, ".address"),
            port: concat!($side, ".port"),
            kind: concat!("flowd.", $side, ".kind"),
            namespace: concat!("flowd.", $side, ".namespace"),
            pod: concat!("flowd.", $side, ".pod"),
            workload_kind: concat!("flowd.", $side, ".workload.kind"),
            workload_name: concat!("flowd.", $side, ".workload.name"),
            node: concat!("flowd.", $side, ".node"),
            services: concat!("flowd.", $side, ".services"),
        }
    };
}

struct PolicyKeys {
    allowed: &'static str,
    action: &'static str,
    kind: &'static str,
    tier: &'static str,
    namespace: &'static str,
    name: &'static str,
    rule: &'static str,
    rule_name: &'static str,
}

macro_rules! policy_keys {
    ($side:literal) => {
        PolicyKeys {
            allowed: concat!("flowd.policy.", $side, ".allowed"),
            action: concat!("flowd.policy.", $side, ".action"),
            kind: concat!("flowd.policy.", $side, ".kind"),
            tier: concat!("flowd.policy.", $side, ".tier"),
            namespace: concat!("flowd.policy.", $side, ".namespace"),
            name: concat!("flowd.policy.", $side, ".name"),
            rule: concat!("flowd.policy.", $side, ".rule"),
            rule_name: concat!("flowd.policy.", $side, ".rule_name"),
        }
    };
}

struct CounterKeys {
    packets: &'static str,
    bytes: &'static str,
    dropped_packets: &'static str,
}

macro_rules! counter_keys {
    ($side:literal) => {
        CounterKeys {
            packets: concat!("flowd.", $side, ".packets"),
            bytes: concat!("flowd.", $side, ".bytes"),
            dropped_packets: concat!("flowd.", $side, ".dropped_packets"),
        }
    };
}

/// Text attributes with a value: an empty string is left out.
fn text_if(attributes: &mut impl Attributes, key: &str, value: &str) {
    if !value.is_empty() {
        attributes.text(key, value);
    }
}

fn count(attributes: &mut impl Attributes, key: &str, value: u64) {
    attributes.int(key, i64::try_from(value).unwrap_or(i64::MAX));
}

/// A record's attributes; those without a value (an empty string, an absent policy) are left
/// out.
fn flow_attributes(flow: &pb::Flow, attributes: &mut impl Attributes) {
    let ip_version = pb::IpVersion::try_from(flow.ip_version).ok();
    if let Some(kind) = ip_version.and_then(|v| match v {
        pb::IpVersion::Ipv4 => Some("ipv4"),
        pb::IpVersion::Ipv6 => Some("ipv6"),
        _ => None,
    }) {
        attributes.text("network.type", kind);
    }
    let protocol = pb::Protocol::try_from(flow.protocol).ok();
    if let Some(transport) = protocol.and_then(|p| match p {
        pb::Protocol::Tcp => Some("tcp"),
        pb::Protocol::Udp => Some("udp"),
        _ => None,
    }) {
        attributes.text("network.transport", transport);
    }
    attributes.lowercase("flowd.protocol", &protocol_word(flow.protocol));
    for (keys, endpoint) in [
        (endpoint_keys!("source"), &flow.source),
        (endpoint_keys!("destination"), &flow.destination),
    ] {
        let Some(endpoint) = endpoint else { continue };
        text_if(attributes, keys.address, &endpoint.ip);
        if endpoint.port != 0 {
            attributes.int(keys.port, i64::from(endpoint.port));
        }
        if let Ok(kind) = pb::EndpointKind::try_from(endpoint.kind) {
            attributes.lowercase(keys.kind, enum_word(kind.as_str_name(), "ENDPOINT_KIND_"));
        }
        text_if(attributes, keys.namespace, &endpoint.namespace);
        text_if(attributes, keys.pod, &endpoint.name);
        if let Some(workload) = &endpoint.workload {
            text_if(attributes, keys.workload_kind, &workload.kind);
            text_if(attributes, keys.workload_name, &workload.name);
        }
        text_if(attributes, keys.node, &endpoint.node);
        if !endpoint.services.is_empty() {
            text_if(attributes, keys.services, &endpoint.services.join(","));
        }
    }
    if matches!(protocol, Some(pb::Protocol::Icmp | pb::Protocol::Icmpv6)) {
        attributes.int("flowd.icmp.type", i64::from(flow.icmp_type));
        attributes.int("flowd.icmp.code", i64::from(flow.icmp_code));
    }
    attributes.lowercase("flowd.verdict", verdict_word(flow));
    if let Ok(outcome) = pb::Outcome::try_from(flow.outcome) {
        attributes.lowercase(
            "flowd.outcome",
            enum_word(outcome.as_str_name(), "OUTCOME_"),
        );
    }
    text_if(attributes, "flowd.drop_reason", &flow.drop_reason);
    text_if(attributes, "flowd.drop_location", &flow.drop_location);
    for (keys, decision) in [
        (policy_keys!("ingress"), &flow.ingress),
        (policy_keys!("egress"), &flow.egress),
    ] {
        let Some(decision) = decision else { continue };
        attributes.boolean(keys.allowed, decision.allowed);
        text_if(attributes, keys.action, &decision.action);
        if let Some(policy) = &decision.policy {
            text_if(attributes, keys.kind, &policy.kind);
            text_if(attributes, keys.tier, &policy.tier);
            text_if(attributes, keys.namespace, &policy.namespace);
            text_if(attributes, keys.name, &policy.name);
            attributes.int(keys.rule, i64::from(policy.rule_index));
            text_if(attributes, keys.rule_name, &policy.rule_name);
        }
    }
    for (keys, counters) in [
        (counter_keys!("request"), &flow.request),
        (counter_keys!("reply"), &flow.reply),
    ] {
        let Some(counters) = counters else { continue };
        count(attributes, keys.packets, counters.packets);
        count(attributes, keys.bytes, counters.bytes);
        if counters.dropped_packets > 0 {
            count(attributes, keys.dropped_packets, counters.dropped_packets);
        }
    }
    count(attributes, "flowd.connections", flow.connections);
    if let Some(process) = &flow.process {
        text_if(attributes, "process.command", &process.command);
        if process.pid != 0 {
            attributes.int("process.pid", i64::from(process.pid));
        }
    }
    if let Some(interface) = &flow.interface {
        text_if(attributes, "network.interface.name", &interface.name);
    }
    count(attributes, "flowd.cursor", flow.cursor);
}

fn verdict_word(flow: &pb::Flow) -> &'static str {
    let verdict = pb::Verdict::try_from(flow.verdict).unwrap_or_default();
    enum_word(verdict.as_str_name(), "VERDICT_")
}

/// Denied and dropped flows are warnings, the rest information.
fn severity(flow: &pb::Flow) -> (SeverityNumber, &'static str) {
    match pb::Verdict::try_from(flow.verdict) {
        Ok(pb::Verdict::Denied | pb::Verdict::Dropped) => (SeverityNumber::Warn, "WARN"),
        _ => (SeverityNumber::Info, "INFO"),
    }
}

/// The record's body, `PROTOCOL SOURCE -> DESTINATION verdict`, written into `out`.
fn write_body(flow: &pb::Flow, out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{} {} -> {} ",
        protocol_word(flow.protocol),
        Address(&flow.source),
        Address(&flow.destination),
    );
    out.extend(verdict_word(flow).chars().map(|c| c.to_ascii_lowercase()));
}

const EVENT_NAME: &str = "flowd.flow";

/// The flow as a log record (the official types; the exporter encodes the same message with
/// `encode_log_record`).
pub fn log_record(flow: &pb::Flow) -> LogRecord {
    let mut attributes = Vec::with_capacity(40);
    flow_attributes(flow, &mut attributes);
    let (severity_number, severity_text) = severity(flow);
    LogRecord {
        time_unix_nano: flow.end_time.as_ref().map_or(0, time_ns),
        observed_time_unix_nano: flow.recorded_time.as_ref().map_or(0, time_ns),
        severity_number: severity_number as i32,
        severity_text: severity_text.into(),
        event_name: EVENT_NAME.into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue({
                let mut body = String::new();
                write_body(flow, &mut body);
                body
            })),
        }),
        attributes,
        ..Default::default()
    }
}

/// The fields of `log_record`'s message, encoded into `out` (LogRecord: time_unix_nano 1,
/// severity_number 2, severity_text 3, body 5, attributes 6, observed_time_unix_nano 11,
/// event_name 12).
fn encode_log_record(flow: &pb::Flow, out: &mut Vec<u8>, body: &mut String) {
    let (severity_number, severity_text) = severity(flow);
    wire::fixed64(1, flow.end_time.as_ref().map_or(0, time_ns), out);
    wire::fixed64(11, flow.recorded_time.as_ref().map_or(0, time_ns), out);
    wire::varint(2, severity_number as u64, out);
    wire::string(3, severity_text, out);
    write_body(flow, body);
    wire::text_value(5, body, out);
    flow_attributes(flow, &mut wire::Attributes::new(6, out));
    wire::string(12, EVENT_NAME, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute<'a>(record: &'a LogRecord, key: &str) -> Option<&'a Value> {
        record
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn a_denied_flow_names_its_endpoints_verdict_and_policy() {
        let flow = pb::Flow {
            cursor: 7,
            node: "node-a".into(),
            ip_version: pb::IpVersion::Ipv4 as i32,
            protocol: pb::Protocol::Tcp as i32,
            source: Some(pb::Endpoint {
                ip: "198.18.0.1".into(),
                port: 40000,
                kind: pb::EndpointKind::Pod as i32,
                namespace: "fmeserver".into(),
                name: "engine-1".into(),
                workload: Some(pb::Workload {
                    kind: "Deployment".into(),
                    name: "engine".into(),
                }),
                ..Default::default()
            }),
            destination: Some(pb::Endpoint {
                ip: "198.18.0.2".into(),
                port: 42001,
                ..Default::default()
            }),
            verdict: pb::Verdict::Denied as i32,
            outcome: pb::Outcome::Unanswered as i32,
            ingress: Some(pb::PolicyDecision {
                allowed: false,
                policy: Some(pb::PolicyRef {
                    kind: "NetworkPolicy".into(),
                    namespace: "fmeserver".into(),
                    name: "default-deny-fmeserver".into(),
                    rule_index: -1,
                    ..Default::default()
                }),
                action: "EndOfTierDeny".into(),
                trace: Vec::new(),
            }),
            request: Some(pb::TrafficCounters {
                packets: 3,
                bytes: 180,
                ..Default::default()
            }),
            connections: 1,
            ..Default::default()
        };
        let record = log_record(&flow);
        let string = |key| match attribute(&record, key) {
            Some(Value::StringValue(s)) => s.clone(),
            other => panic!("{key}: {other:?}"),
        };
        let number = |key| match attribute(&record, key) {
            Some(Value::IntValue(n)) => *n,
            other => panic!("{key}: {other:?}"),
        };
        assert_eq!(string("network.transport"), "tcp");
        assert_eq!(string("network.type"), "ipv4");
        assert_eq!(string("source.address"), "198.18.0.1");
        assert_eq!(number("destination.port"), 42001);
        assert_eq!(string("flowd.source.workload.name"), "engine");
        assert_eq!(string("flowd.verdict"), "denied");
        assert_eq!(string("flowd.outcome"), "unanswered");
        assert_eq!(
            string("flowd.policy.ingress.name"),
            "default-deny-fmeserver"
        );
        assert_eq!(number("flowd.policy.ingress.rule"), -1);
        assert_eq!(number("flowd.request.bytes"), 180);
        assert_eq!(number("flowd.cursor"), 7);
        assert_eq!(record.severity_number, SeverityNumber::Warn as i32);
        // Empty values are left out.
        assert!(attribute(&record, "flowd.destination.namespace").is_none());
        assert!(attribute(&record, "flowd.policy.egress.allowed").is_none());
        let request = request(&[Arc::new(flow)]);
        let resource = request.resource_logs[0].resource.as_ref().unwrap();
        assert!(resource
            .attributes
            .iter()
            .any(|kv| kv.key == "k8s.node.name"
                && kv.value.as_ref().and_then(|v| v.value.as_ref())
                    == Some(&Value::StringValue("node-a".into()))));
    }

    #[test]
    fn the_encoded_request_is_the_official_types_message() {
        use prost::Message as _;
        let denied = pb::Flow {
            cursor: 9,
            node: "node-b".into(),
            ip_version: pb::IpVersion::Ipv4 as i32,
            protocol: pb::Protocol::Icmp as i32,
            icmp_type: 8,
            verdict: pb::Verdict::Denied as i32,
            end_time: Some(pbjson_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            egress: Some(pb::PolicyDecision {
                allowed: false,
                action: "Deny".into(),
                policy: Some(pb::PolicyRef {
                    kind: "GlobalNetworkPolicy".into(),
                    tier: "security".into(),
                    name: "deny-icmp".into(),
                    rule_index: 0,
                    rule_name: "no-ping".into(),
                    ..Default::default()
                }),
                trace: Vec::new(),
            }),
            request: Some(pb::TrafficCounters {
                packets: 1,
                bytes: u64::MAX,
                dropped_packets: 1,
                ..Default::default()
            }),
            process: Some(pb::ProcessInfo {
                command: "ping".into(),
                pid: 42,
                ..Default::default()
            }),
            ..Default::default()
        };
        let batch = [
            Arc::new(super::super::ipv6_udp_flow()),
            Arc::new(denied),
            Arc::new(super::super::ipv6_udp_flow()),
        ];
        let decoded = ExportLogsServiceRequest::decode(encode_request(&batch)).unwrap();
        assert_eq!(decoded, request(&batch));
        assert_eq!(decoded.resource_logs.len(), 2, "a resource per node");
    }

    #[test]
    fn an_ipv6_body_brackets_its_addresses() {
        let flow = pb::Flow {
            verdict: pb::Verdict::Forwarded as i32,
            ..super::super::ipv6_udp_flow()
        };
        let record = log_record(&flow);
        let Some(Value::StringValue(body)) = record.body.and_then(|b| b.value) else {
            panic!("the body is text");
        };
        assert!(
            body.contains("[fd00::1]:53000 -> [fd00::2]:53"),
            "body: {body}"
        );
    }
}
