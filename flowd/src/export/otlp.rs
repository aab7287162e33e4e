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

use opentelemetry_proto::tonic::{
    collector::logs::v1::{logs_service_client::LogsServiceClient, ExportLogsServiceRequest},
    common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    resource::v1::Resource,
};
use tonic::transport::{Channel, Endpoint};

use super::{
    address,
    delivery::{Accepted, Sink, SinkError},
};
use crate::{
    proto::{protocol_name, v1 as pb},
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
    client: LogsServiceClient<Channel>,
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
            client: LogsServiceClient::new(channel).max_decoding_message_size(1 << 20),
        })
    }
}

impl Sink for OtlpSink {
    async fn send(&mut self, batch: &[Arc<pb::Flow>]) -> Result<Accepted, SinkError> {
        let request = request(batch);
        match self.client.export(request).await {
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
            Err(status) => Err(SinkError::Unavailable(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
    }
}

/// One request for a batch: a resource per node (an agent's batch has one).
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

fn count(key: &str, value: u64) -> KeyValue {
    int(key, i64::try_from(value).unwrap_or(i64::MAX))
}

/// An enum value's proto name without its type prefix, lower case (`VERDICT_DENIED` -> `denied`).
fn enum_word(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
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

/// The flow as a log record; attributes without a value (an empty string, an absent policy)
/// are left out.
pub fn log_record(flow: &pb::Flow) -> LogRecord {
    let mut attributes = Vec::with_capacity(40);
    let push_text = |attributes: &mut Vec<KeyValue>, key: &str, value: &str| {
        if !value.is_empty() {
            attributes.push(text(key, value));
        }
    };
    let ip_version = pb::IpVersion::try_from(flow.ip_version).ok();
    if let Some(kind) = ip_version.and_then(|v| match v {
        pb::IpVersion::Ipv4 => Some("ipv4"),
        pb::IpVersion::Ipv6 => Some("ipv6"),
        _ => None,
    }) {
        attributes.push(text("network.type", kind));
    }
    let protocol = pb::Protocol::try_from(flow.protocol).ok();
    if let Some(transport) = protocol.and_then(|p| match p {
        pb::Protocol::Tcp => Some("tcp"),
        pb::Protocol::Udp => Some("udp"),
        _ => None,
    }) {
        attributes.push(text("network.transport", transport));
    }
    let protocol_word = protocol_name(flow.protocol);
    attributes.push(text("flowd.protocol", &protocol_word.to_lowercase()));
    for (keys, endpoint) in [
        (endpoint_keys!("source"), &flow.source),
        (endpoint_keys!("destination"), &flow.destination),
    ] {
        let Some(endpoint) = endpoint else { continue };
        push_text(&mut attributes, keys.address, &endpoint.ip);
        if endpoint.port != 0 {
            attributes.push(int(keys.port, i64::from(endpoint.port)));
        }
        if let Ok(kind) = pb::EndpointKind::try_from(endpoint.kind) {
            attributes.push(text(
                keys.kind,
                &enum_word(kind.as_str_name(), "ENDPOINT_KIND_"),
            ));
        }
        push_text(&mut attributes, keys.namespace, &endpoint.namespace);
        push_text(&mut attributes, keys.pod, &endpoint.name);
        if let Some(workload) = &endpoint.workload {
            push_text(&mut attributes, keys.workload_kind, &workload.kind);
            push_text(&mut attributes, keys.workload_name, &workload.name);
        }
        push_text(&mut attributes, keys.node, &endpoint.node);
        if !endpoint.services.is_empty() {
            push_text(&mut attributes, keys.services, &endpoint.services.join(","));
        }
    }
    if matches!(protocol, Some(pb::Protocol::Icmp | pb::Protocol::Icmpv6)) {
        attributes.push(int("flowd.icmp.type", i64::from(flow.icmp_type)));
        attributes.push(int("flowd.icmp.code", i64::from(flow.icmp_code)));
    }
    let verdict = pb::Verdict::try_from(flow.verdict).unwrap_or_default();
    let verdict_word = enum_word(verdict.as_str_name(), "VERDICT_");
    attributes.push(text("flowd.verdict", &verdict_word));
    if let Ok(outcome) = pb::Outcome::try_from(flow.outcome) {
        attributes.push(text(
            "flowd.outcome",
            &enum_word(outcome.as_str_name(), "OUTCOME_"),
        ));
    }
    push_text(&mut attributes, "flowd.drop_reason", &flow.drop_reason);
    push_text(&mut attributes, "flowd.drop_location", &flow.drop_location);
    for (keys, decision) in [
        (policy_keys!("ingress"), &flow.ingress),
        (policy_keys!("egress"), &flow.egress),
    ] {
        let Some(decision) = decision else { continue };
        attributes.push(KeyValue {
            key: keys.allowed.to_owned(),
            value: Some(AnyValue {
                value: Some(Value::BoolValue(decision.allowed)),
            }),
            ..Default::default()
        });
        push_text(&mut attributes, keys.action, &decision.action);
        if let Some(policy) = &decision.policy {
            push_text(&mut attributes, keys.kind, &policy.kind);
            push_text(&mut attributes, keys.tier, &policy.tier);
            push_text(&mut attributes, keys.namespace, &policy.namespace);
            push_text(&mut attributes, keys.name, &policy.name);
            attributes.push(int(keys.rule, i64::from(policy.rule_index)));
            push_text(&mut attributes, keys.rule_name, &policy.rule_name);
        }
    }
    for (keys, counters) in [
        (counter_keys!("request"), &flow.request),
        (counter_keys!("reply"), &flow.reply),
    ] {
        let Some(counters) = counters else { continue };
        attributes.push(count(keys.packets, counters.packets));
        attributes.push(count(keys.bytes, counters.bytes));
        if counters.dropped_packets > 0 {
            attributes.push(count(keys.dropped_packets, counters.dropped_packets));
        }
    }
    attributes.push(count("flowd.connections", flow.connections));
    if let Some(process) = &flow.process {
        push_text(&mut attributes, "process.command", &process.command);
        if process.pid != 0 {
            attributes.push(int("process.pid", i64::from(process.pid)));
        }
    }
    if let Some(interface) = &flow.interface {
        push_text(&mut attributes, "network.interface.name", &interface.name);
    }
    attributes.push(count("flowd.cursor", flow.cursor));
    let flagged = matches!(verdict, pb::Verdict::Denied | pb::Verdict::Dropped);
    let (severity_number, severity_text) = if flagged {
        (SeverityNumber::Warn, "WARN")
    } else {
        (SeverityNumber::Info, "INFO")
    };
    LogRecord {
        time_unix_nano: flow.end_time.as_ref().map_or(0, time_ns),
        observed_time_unix_nano: flow.recorded_time.as_ref().map_or(0, time_ns),
        severity_number: severity_number as i32,
        severity_text: severity_text.into(),
        event_name: "flowd.flow".into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(format!(
                "{} {} -> {} {}",
                protocol_word,
                address(&flow.source),
                address(&flow.destination),
                verdict_word,
            ))),
        }),
        attributes,
        ..Default::default()
    }
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
