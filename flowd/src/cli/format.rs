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

pub const TABLE_HEADER: &str = "END(UTC)      INTERFACE    PROTO   SOURCE                         DESTINATION                        REQ PKTS    REQ BYTES  REPLY PKTS  REPLY BYTES  OUTCOME       VERDICT    FLAGS";

fn enum_text(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

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
    let side = |e: Option<&pb::Endpoint>| {
        e.map(|e| endpoint(&e.ip, e.port, has_ports))
            .unwrap_or_default()
    };
    let counters = |c: Option<&pb::TrafficCounters>| {
        c.map(|c| (c.packets, c.bytes, flags_text(c.tcp_flags.as_ref())))
            .unwrap_or_default()
    };
    let (req_packets, req_bytes, req_flags) = counters(flow.request.as_ref());
    let (rep_packets, rep_bytes, rep_flags) = counters(flow.reply.as_ref());
    let mut flags = if req_flags.is_empty() && rep_flags.is_empty() {
        String::new()
    } else {
        format!("{req_flags}/{rep_flags}")
    };
    if !has_ports {
        let _ = write!(flags, "type={} code={}", flow.icmp_type, flow.icmp_code);
    }
    let outcome = pb::Outcome::try_from(flow.outcome)
        .map(|o| enum_text(o.as_str_name(), "OUTCOME_"))
        .unwrap_or_default();
    let verdict = pb::Verdict::try_from(flow.verdict)
        .map(|v| enum_text(v.as_str_name(), "VERDICT_"))
        .unwrap_or_default();
    format!(
        "{:<13} {:<12} {:<7} {:<30} {:<32} {:>9} {:>12} {:>11} {:>12}  {:<13} {:<10} {}",
        time_text(flow.end_time.as_ref()),
        interface,
        protocol,
        side(flow.source.as_ref()),
        format!("-> {}", side(flow.destination.as_ref())),
        req_packets,
        req_bytes,
        rep_packets,
        rep_bytes,
        outcome,
        verdict,
        flags
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(ip: &str, port: u32) -> Option<pb::Endpoint> {
        Some(pb::Endpoint {
            ip: ip.into(),
            port,
            ..Default::default()
        })
    }

    #[test]
    fn tcp_line_shows_endpoints_both_directions_and_outcome() {
        let flow = pb::Flow {
            protocol: pb::Protocol::Tcp as i32,
            source: endpoint("fd00::1", 40000),
            destination: endpoint("fd00::2", 7070),
            request: Some(pb::TrafficCounters {
                packets: 12,
                bytes: 3456,
                tcp_flags: Some(pb::TcpFlags {
                    syn: true,
                    ack: true,
                    fin: true,
                    ..Default::default()
                }),
                direction: pb::TrafficDirection::Egress as i32,
            }),
            reply: Some(pb::TrafficCounters {
                packets: 10,
                bytes: 98765,
                ..Default::default()
            }),
            outcome: pb::Outcome::Closed as i32,
            verdict: pb::Verdict::Forwarded as i32,
            ..Default::default()
        };
        let line = flow_line(&flow);
        assert!(line.contains("[fd00::1]:40000"), "{line}");
        assert!(line.contains("-> [fd00::2]:7070"), "{line}");
        assert!(line.contains("SYN,ACK,FIN/"), "{line}");
        assert!(line.contains("3456") && line.contains("98765"), "{line}");
        assert!(
            line.contains("closed") && line.contains("forwarded"),
            "{line}"
        );
    }

    #[test]
    fn icmp_line_shows_type_and_code_not_ports() {
        let flow = pb::Flow {
            protocol: pb::Protocol::Icmp as i32,
            source: endpoint("198.18.0.1", 99),
            destination: endpoint("198.18.0.2", 99),
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
