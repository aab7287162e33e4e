//! Human-readable rendering of flows and status: one line a flow.

use std::fmt::Write as _;

use crate::api::proto::v1 as pb;

pub fn protocol_name(protocol: i32) -> String {
    match pb::Protocol::try_from(protocol) {
        Ok(pb::Protocol::Tcp) => "TCP".into(),
        Ok(pb::Protocol::Udp) => "UDP".into(),
        Ok(pb::Protocol::Icmp) => "ICMP".into(),
        Ok(pb::Protocol::Icmpv6) => "ICMPv6".into(),
        Ok(pb::Protocol::Sctp) => "SCTP".into(),
        _ => format!("proto-{protocol}"),
    }
}

fn endpoint(ip: &str, port: u32, with_port: bool) -> String {
    match (with_port, ip.contains(':')) {
        (false, _) => ip.to_owned(),
        (true, true) => format!("[{ip}]:{port}"),
        (true, false) => format!("{ip}:{port}"),
    }
}

fn flags_text(flags: Option<&pb::TcpFlags>) -> String {
    let Some(f) = flags else {
        return String::new();
    };
    [
        (f.syn, "SYN"),
        (f.ack, "ACK"),
        (f.psh, "PSH"),
        (f.fin, "FIN"),
        (f.rst, "RST"),
        (f.urg, "URG"),
        (f.ece, "ECE"),
        (f.cwr, "CWR"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join(",")
}

fn time_text(ts: Option<&pbjson_types::Timestamp>) -> String {
    let Some(ts) = ts else {
        return "-".into();
    };
    let secs_of_day = ts.seconds.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        ts.nanos / 1_000_000
    )
}

pub const TABLE_HEADER: &str =
    "END(UTC)      INTERFACE    DIR  PROTO   SOURCE                         DESTINATION                      PKTS        BYTES  FLAGS            REASON";

pub fn flow_line(flow: &pb::Flow) -> String {
    let protocol = protocol_name(flow.protocol);
    let has_ports = matches!(
        pb::Protocol::try_from(flow.protocol),
        Ok(pb::Protocol::Tcp | pb::Protocol::Udp | pb::Protocol::Sctp)
    );
    let interface = flow
        .interface
        .as_ref()
        .map(|i| i.name.as_str())
        .unwrap_or("");
    let direction = match pb::TrafficDirection::try_from(flow.direction) {
        Ok(pb::TrafficDirection::Ingress) => "in",
        Ok(pb::TrafficDirection::Egress) => "out",
        _ => "?",
    };
    let mut flags = flags_text(flow.tcp_flags.as_ref());
    if !has_ports && (flow.icmp_type != 0 || flow.icmp_code != 0 || flow.protocol != 0) {
        let _ = write!(flags, "type={} code={}", flow.icmp_type, flow.icmp_code);
    }
    let reason = pb::ReportReason::try_from(flow.report_reason)
        .map(|r| {
            r.as_str_name()
                .trim_start_matches("REPORT_REASON_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    format!(
        "{:<13} {:<12} {:<4} {:<7} {:<30} {:<30} {:>6} {:>12}  {:<16} {}",
        time_text(flow.end_time.as_ref()),
        interface,
        direction,
        protocol,
        endpoint(&flow.source_ip, flow.source_port, has_ports),
        format!(
            "-> {}",
            endpoint(&flow.destination_ip, flow.destination_port, has_ports)
        ),
        flow.packets,
        flow.bytes,
        flags,
        reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_line_shows_endpoints_counters_and_flags() {
        let flow = pb::Flow {
            protocol: pb::Protocol::Tcp as i32,
            source_ip: "fd00::1".into(),
            source_port: 40000,
            destination_ip: "fd00::2".into(),
            destination_port: 7070,
            packets: 12,
            bytes: 3456,
            tcp_flags: Some(pb::TcpFlags {
                syn: true,
                ack: true,
                fin: true,
                ..Default::default()
            }),
            direction: pb::TrafficDirection::Egress as i32,
            report_reason: pb::ReportReason::ConnectionEnd as i32,
            ..Default::default()
        };
        let line = flow_line(&flow);
        assert!(line.contains("[fd00::1]:40000"), "{line}");
        assert!(line.contains("-> [fd00::2]:7070"), "{line}");
        assert!(line.contains("SYN,ACK,FIN"), "{line}");
        assert!(
            line.contains("3456") && line.contains("connection_end"),
            "{line}"
        );
        assert!(line.contains(" out "), "{line}");
    }

    #[test]
    fn icmp_line_shows_type_and_code_not_ports() {
        let flow = pb::Flow {
            protocol: pb::Protocol::Icmp as i32,
            source_ip: "198.18.0.1".into(),
            destination_ip: "198.18.0.2".into(),
            source_port: 99,
            icmp_type: 8,
            ..Default::default()
        };
        let line = flow_line(&flow);
        assert!(
            line.contains("198.18.0.1 ") && !line.contains(":99"),
            "{line}"
        );
        assert!(line.contains("type=8 code=0"), "{line}");
    }
}
