use std::time::SystemTime;

use flowd_common::{TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG};

use super::proto::v1 as pb;
use crate::{
    flow::{Direction, ReportReason},
    store::StoredFlow,
};

fn timestamp(time: SystemTime) -> pbjson_types::Timestamp {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
    }
}

pub fn flow_to_proto(stored: &StoredFlow) -> pb::Flow {
    let r = &stored.record;
    let flags = r.tcp_flags.0;
    let has = |bit: u32| flags & bit != 0;
    pb::Flow {
        cursor: stored.cursor,
        start_time: Some(timestamp(r.start)),
        end_time: Some(timestamp(r.end)),
        node: r.node.to_string(),
        ip_version: i32::from(r.ip_version),
        protocol: i32::from(r.protocol),
        source_ip: r.source.to_string(),
        destination_ip: r.destination.to_string(),
        source_port: u32::from(r.source_port),
        destination_port: u32::from(r.destination_port),
        icmp_type: u32::from(r.icmp_type),
        icmp_code: u32::from(r.icmp_code),
        packets: r.packets,
        bytes: r.bytes,
        tcp_flags: (flags != 0).then(|| pb::TcpFlags {
            fin: has(TCP_FIN),
            syn: has(TCP_SYN),
            rst: has(TCP_RST),
            psh: has(TCP_PSH),
            ack: has(TCP_ACK),
            urg: has(TCP_URG),
            ece: has(TCP_ECE),
            cwr: has(TCP_CWR),
        }),
        interface: Some(pb::Interface {
            name: r.interface.name.clone(),
            index: r.interface.index,
            netns_cookie: r.interface.netns_cookie,
            netns: r.interface.netns.clone(),
        }),
        direction: match r.direction {
            Direction::Ingress => pb::TrafficDirection::Ingress,
            Direction::Egress => pb::TrafficDirection::Egress,
        } as i32,
        report_reason: match r.reason {
            ReportReason::ActiveTimeout => pb::ReportReason::ActiveTimeout,
            ReportReason::IdleTimeout => pb::ReportReason::IdleTimeout,
            ReportReason::ConnectionEnd => pb::ReportReason::ConnectionEnd,
            ReportReason::Shutdown => pb::ReportReason::Shutdown,
            ReportReason::MapFull => pb::ReportReason::MapFull,
        } as i32,
    }
}
