//! Records in the public API's form (`flowd.v1.Flow`): what the store keeps and serves.

use std::time::SystemTime;

use flowd_common::{TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG};

use crate::{
    model::{
        EndpointAddr, EndpointKind, EndpointMeta, FlowRecord, Outcome, ReportReason, SideCounters,
        SideVerdict, TcpFlags, TrafficDirection, Verdict,
    },
    proto::v1 as pb,
};

pub fn timestamp(time: SystemTime) -> pbjson_types::Timestamp {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
    }
}

/// A time given in nanoseconds since the epoch.
pub fn timestamp_ns(ns: u64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: (ns / 1_000_000_000) as i64,
        nanos: (ns % 1_000_000_000) as i32,
    }
}

fn tcp_flags(flags: TcpFlags) -> Option<pb::TcpFlags> {
    let has = |bit: u16| flags.0 & bit != 0;
    (flags.0 != 0).then(|| pb::TcpFlags {
        fin: has(TCP_FIN),
        syn: has(TCP_SYN),
        rst: has(TCP_RST),
        psh: has(TCP_PSH),
        ack: has(TCP_ACK),
        urg: has(TCP_URG),
        ece: has(TCP_ECE),
        cwr: has(TCP_CWR),
    })
}

fn direction(direction: Option<TrafficDirection>) -> pb::TrafficDirection {
    match direction {
        Some(TrafficDirection::Ingress) => pb::TrafficDirection::Ingress,
        Some(TrafficDirection::Egress) => pb::TrafficDirection::Egress,
        None => pb::TrafficDirection::Unspecified,
    }
}

fn counters(side: &SideCounters) -> pb::TrafficCounters {
    pb::TrafficCounters {
        packets: side.packets,
        bytes: side.bytes,
        tcp_flags: tcp_flags(side.tcp_flags),
        direction: direction(side.direction) as i32,
        dropped_packets: side.dropped_packets,
        dropped_bytes: side.dropped_bytes,
    }
}

fn endpoint(endpoint: &EndpointAddr, meta: Option<&EndpointMeta>) -> pb::Endpoint {
    let mut out = pb::Endpoint {
        ip: endpoint.ip.to_string(),
        port: u32::from(endpoint.port),
        ..pb::Endpoint::default()
    };
    if let Some(meta) = meta {
        out.kind = match meta.kind {
            EndpointKind::Pod => pb::EndpointKind::Pod,
            EndpointKind::Host => pb::EndpointKind::Host,
            EndpointKind::Node => pb::EndpointKind::Node,
            EndpointKind::Service => pb::EndpointKind::Service,
            EndpointKind::WorldPrivate => pb::EndpointKind::WorldPrivate,
            EndpointKind::WorldPublic => pb::EndpointKind::WorldPublic,
            EndpointKind::NetworkSet => pb::EndpointKind::NetworkSet,
        } as i32;
        out.namespace = meta.namespace.clone();
        out.name = meta.name.clone();
        out.labels = meta
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.workload = meta.workload.as_ref().map(|w| pb::Workload {
            kind: w.kind.as_str().to_owned(),
            name: w.name.clone(),
        });
        out.services = meta.services.clone();
        out.node = meta.node.clone();
    }
    out
}

pub fn policy_ref(
    policy: &crate::policy::PolicyRef,
    rule: Option<i32>,
    rule_name: Option<&str>,
) -> pb::PolicyRef {
    pb::PolicyRef {
        kind: policy.kind.as_str().to_owned(),
        tier: policy.tier.clone(),
        namespace: policy.namespace.clone().unwrap_or_default(),
        name: policy.name.clone(),
        rule_index: rule.unwrap_or(-1),
        rule_name: rule_name.unwrap_or_default().to_owned(),
    }
}

fn decision(side: &SideVerdict) -> pb::PolicyDecision {
    pb::PolicyDecision {
        allowed: side.allowed,
        policy: side
            .policy
            .as_ref()
            .map(|p| policy_ref(p, side.rule, side.rule_name.as_deref())),
        action: side.ruling.as_str().to_owned(),
        trace: side.trace.clone(),
    }
}

pub fn outcome(outcome: Outcome) -> pb::Outcome {
    match outcome {
        Outcome::Established => pb::Outcome::Established,
        Outcome::Closed => pb::Outcome::Closed,
        Outcome::Reset => pb::Outcome::Reset,
        Outcome::Refused => pb::Outcome::Refused,
        Outcome::Unanswered => pb::Outcome::Unanswered,
        Outcome::Answered => pb::Outcome::Answered,
        Outcome::RequestOnly => pb::Outcome::RequestOnly,
        Outcome::Unreachable => pb::Outcome::Unreachable,
    }
}

pub fn verdict(verdict: Verdict) -> pb::Verdict {
    match verdict {
        Verdict::Forwarded => pb::Verdict::Forwarded,
        Verdict::Dropped => pb::Verdict::Dropped,
        Verdict::Denied => pb::Verdict::Denied,
        Verdict::NotEnforced => pb::Verdict::NotEnforced,
    }
}

/// The record as an API message; the store assigns its cursor.
pub fn to_proto(r: &FlowRecord) -> pb::Flow {
    pb::Flow {
        cursor: 0,
        start_time: Some(timestamp(r.start)),
        end_time: Some(timestamp(r.end)),
        node: r.node.to_string(),
        ip_version: i32::from(r.ip_version),
        protocol: i32::from(r.protocol),
        source: Some(endpoint(&r.source, r.source_meta.as_deref())),
        destination: Some(endpoint(&r.destination, r.destination_meta.as_deref())),
        icmp_type: u32::from(r.icmp_type),
        icmp_code: u32::from(r.icmp_code),
        request: Some(counters(&r.request)),
        reply: Some(counters(&r.reply)),
        interface: Some(pb::Interface {
            name: r.interface.name.clone(),
            index: r.interface.index,
            netns_cookie: r.interface.netns_cookie,
            netns: r.interface.netns.clone(),
        }),
        verdict: verdict(r.verdict) as i32,
        drop_reason: r.drop_reason.clone().unwrap_or_default(),
        drop_location: r.drop_location.clone().unwrap_or_default(),
        outcome: outcome(r.outcome) as i32,
        policy: r.policy.as_ref().and_then(|p| {
            p.deciding().policy.as_ref().map(|policy| {
                let deciding = p.deciding();
                policy_ref(policy, deciding.rule, deciding.rule_name.as_deref())
            })
        }),
        egress: r.policy.as_ref().map(|p| decision(&p.egress)),
        ingress: r.policy.as_ref().map(|p| decision(&p.ingress)),
        // Stamped by the store as it appends.
        recorded_time: None,
        process: r.process.as_ref().map(|p| pb::ProcessInfo {
            pid: p.pid,
            command: p.command.clone(),
            cgroup_id: p.cgroup_id,
        }),
        report_reason: match r.reason {
            ReportReason::ActiveTimeout => pb::ReportReason::ActiveTimeout,
            ReportReason::IdleTimeout => pb::ReportReason::IdleTimeout,
            ReportReason::ConnectionEnd => pb::ReportReason::ConnectionEnd,
            ReportReason::Shutdown => pb::ReportReason::Shutdown,
            ReportReason::MapFull => pb::ReportReason::MapFull,
        } as i32,
        connections: r.connections,
        initiator_certain: r.initiator_certain,
    }
}
