//! Human-readable rendering of flows and status: one line a flow.

use std::fmt::Write as _;

use crate::proto::v1 as pb;

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
    if with_port {
        crate::proto::endpoint_text(ip, port)
    } else {
        ip.to_owned()
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
    // Who, when metadata names the endpoint (namespace/pod), else the address.
    let side = |e: Option<&pb::Endpoint>| {
        e.map(|e| {
            if e.name.is_empty() {
                endpoint(&e.ip, e.port, has_ports)
            } else {
                let who = if e.namespace.is_empty() {
                    e.name.clone()
                } else {
                    format!("{}/{}", e.namespace, e.name)
                };
                if has_ports {
                    format!("{who}:{}", e.port)
                } else {
                    who
                }
            }
        })
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

pub const WIDE_HEADER: &str = "CURSOR     START(UTC)    END(UTC)      NODE             INTERFACE    PROTO   SOURCE                         DESTINATION                        REQ PKTS    REQ BYTES  REPLY PKTS  REPLY BYTES  OUTCOME       VERDICT    FLAGS  DROP REASON        POLICY                       PROCESS              REPORTED";

pub fn wide_line(flow: &pb::Flow) -> String {
    let compact = flow_line(flow);
    // The compact line starts with the end time; the wide one adds context around it.
    let rest = compact.get(14..).unwrap_or("");
    let policy = flow
        .policy
        .as_ref()
        .map(|p| {
            let scope = if p.namespace.is_empty() {
                &p.tier
            } else {
                &p.namespace
            };
            if p.rule_name.is_empty() {
                format!("{scope}/{}#{}", p.name, p.rule_index)
            } else {
                format!("{scope}/{}#{}({})", p.name, p.rule_index, p.rule_name)
            }
        })
        .unwrap_or_default();
    let reason = pb::ReportReason::try_from(flow.report_reason)
        .map(|r| enum_text(r.as_str_name(), "REPORT_REASON_"))
        .unwrap_or_default();
    let process = flow
        .process
        .as_ref()
        .map(|p| format!("{}/{}", p.pid, p.command))
        .unwrap_or_default();
    format!(
        "{:<10} {:<13} {:<13} {:<16} {}  {:<18} {:<28} {:<20} {}",
        flow.cursor,
        time_text(flow.start_time.as_ref()),
        time_text(flow.end_time.as_ref()),
        flow.node,
        rest,
        flow.drop_reason,
        policy,
        process,
        reason
    )
}

/// Colours the whole line by verdict on a terminal: red dropped or denied, yellow not enforced.
pub fn colourise(line: String, flow: &pb::Flow, enabled: bool) -> String {
    if !enabled {
        return line;
    }
    let code = match pb::Verdict::try_from(flow.verdict) {
        Ok(pb::Verdict::Dropped | pb::Verdict::Denied) => "31",
        Ok(pb::Verdict::NotEnforced) => "33",
        Ok(pb::Verdict::Forwarded) => "32",
        _ => return line,
    };
    format!("\x1b[{code}m{line}\x1b[0m")
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
                ..Default::default()
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
    fn colour_follows_the_verdict_and_can_be_off() {
        let dropped = pb::Flow {
            verdict: pb::Verdict::Dropped as i32,
            ..Default::default()
        };
        assert_eq!(colourise("x".into(), &dropped, true), "\x1b[31mx\x1b[0m");
        assert_eq!(colourise("x".into(), &dropped, false), "x");
    }

    #[test]
    fn wide_line_adds_cursor_node_and_policy() {
        let flow = pb::Flow {
            cursor: 77,
            node: "node-9".into(),
            protocol: pb::Protocol::Tcp as i32,
            drop_reason: "NETFILTER_DROP".into(),
            policy: Some(pb::PolicyRef {
                namespace: "fmeserver".into(),
                name: "default-deny".into(),
                rule_index: -1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let line = wide_line(&flow);
        assert!(line.starts_with("77 "), "{line}");
        assert!(
            line.contains("node-9") && line.contains("NETFILTER_DROP"),
            "{line}"
        );
        assert!(line.contains("fmeserver/default-deny#-1"), "{line}");
    }

    #[test]
    fn named_endpoints_show_namespace_and_pod() {
        let flow = pb::Flow {
            protocol: pb::Protocol::Tcp as i32,
            source: Some(pb::Endpoint {
                ip: "198.18.0.1".into(),
                port: 40000,
                namespace: "fmeserver".into(),
                name: "engine-x".into(),
                ..Default::default()
            }),
            destination: endpoint("198.18.0.2", 42001),
            ..Default::default()
        };
        let line = flow_line(&flow);
        assert!(line.contains("fmeserver/engine-x:40000"), "{line}");
        assert!(line.contains("-> 198.18.0.2:42001"), "{line}");
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
