//! Turns the kernel's view of a flow (key, counters, boot-clock times) into a [`FlowRecord`].

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use crate::{capture::DropNames, pipeline::Stage};
use flowd_common::{DIRECTION_EGRESS, DIRECTION_INGRESS, SIDE_A};

use super::outcome;
use crate::model::{
    initiator_side, EndpointAddr, FlowRecord, InterfaceRef, KernelClock, Process, RawFlow,
    SharedInterfaces, SideCounters, TcpFlags, TrafficDirection, Verdict,
};

pub fn ip_from_key(addr: [u8; 16], ip_version: u8) -> IpAddr {
    if ip_version == 4 {
        IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(addr))
    }
}

pub struct Assembler {
    node: Arc<str>,
    interfaces: SharedInterfaces,
    drop_names: Arc<DropNames>,
}

impl Assembler {
    pub fn new(node: &str, interfaces: SharedInterfaces, drop_names: Arc<DropNames>) -> Self {
        Self {
            node: Arc::from(node),
            interfaces,
            drop_names,
        }
    }

    pub fn assemble(&self, raw: &RawFlow, clock: KernelClock) -> FlowRecord {
        let key = &raw.key;
        let stats = &raw.stats;
        let (known, netns_cookie) = self
            .interfaces
            .read()
            .map(|index| {
                (
                    index.by_index.get(&key.ifindex).cloned(),
                    index.netns_cookie,
                )
            })
            .unwrap_or((None, 0));
        let interface = known.unwrap_or_else(|| {
            // Not one of ours by name (e.g. renamed since attach): keep the identity anyway.
            Arc::new(InterfaceRef {
                name: String::new(),
                index: key.ifindex,
                netns_cookie,
                netns: String::new(),
            })
        });
        let initiator = initiator_side(key, stats);
        let responder = initiator ^ 1;
        let endpoint = |side: usize| {
            let (addr, port) = if side == SIDE_A {
                (key.addr_a, key.port_a)
            } else {
                (key.addr_b, key.port_b)
            };
            EndpointAddr {
                ip: ip_from_key(addr, key.ip_version),
                port,
            }
        };
        let counters = |side: usize| SideCounters {
            packets: stats.packets[side],
            bytes: stats.bytes[side],
            tcp_flags: TcpFlags(stats.tcp_flags[side]),
            direction: match stats.hook[side] {
                DIRECTION_INGRESS => Some(TrafficDirection::Ingress),
                DIRECTION_EGRESS => Some(TrafficDirection::Egress),
                _ => None,
            },
            dropped_packets: stats.dropped_packets[side],
            dropped_bytes: stats.dropped_bytes[side],
        };
        let dropped = stats.dropped_packets != [0, 0];
        let outcome = outcome(
            key.protocol,
            stats.tcp_flags[initiator],
            stats.tcp_flags[responder],
            raw.answered,
            raw.overdue,
            stats.icmp_error,
        );
        FlowRecord {
            start: clock.to_wall(stats.first_seen_ns),
            // The last packet's time is tick-resolution, the first's precise: a connection of
            // one tick can look as if it ended before it began.
            end: clock.to_wall(stats.last_seen_ns.max(stats.first_seen_ns)),
            node: self.node.clone(),
            ip_version: key.ip_version,
            protocol: key.protocol,
            source: endpoint(initiator),
            destination: endpoint(responder),
            icmp_type: key.icmp_type,
            icmp_code: key.icmp_code,
            request: counters(initiator),
            reply: counters(responder),
            interface,
            verdict: if dropped && !outcome.got_through() {
                Verdict::Dropped
            } else {
                Verdict::Forwarded
            },
            drop_reason: dropped.then(|| self.drop_names.reason(stats.drop_reason)),
            drop_location: dropped
                .then(|| self.drop_names.location(stats.drop_location))
                .filter(|l| !l.is_empty()),
            outcome,
            process: (stats.owner_side != 0).then(|| Process {
                pid: stats.owner_pid,
                command: {
                    let end = stats.owner_comm.iter().position(|b| *b == 0).unwrap_or(16);
                    String::from_utf8_lossy(&stats.owner_comm[..end]).into_owned()
                },
                cgroup_id: stats.owner_cgroup,
                of_source: usize::from(stats.owner_side) == initiator + 1,
            }),
            source_meta: None,
            destination_meta: None,
            policy: None,
            reason: raw.reason,
            connections: 1,
            initiator_certain: stats.initiator_certain != 0,
        }
    }
}

/// The flow stage: raw kernel flows in, records out.
impl Stage for Assembler {
    type Input = RawFlow;
    type Output = FlowRecord;
    const NAME: &'static str = "flow";

    fn process(&mut self, batch: Vec<RawFlow>) -> Vec<FlowRecord> {
        let clock = KernelClock::now();
        batch.iter().map(|raw| self.assemble(raw, clock)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flowd_common::{
        parse::ipv4_mapped, FlowKey, FlowStats, HOOK_NONE, SIDE_B, TCP_ACK, TCP_FIN, TCP_SYN,
    };

    use super::*;
    use crate::model::{InterfaceIndex, Outcome, ReportReason};

    fn interfaces() -> (InterfaceIndex, Arc<InterfaceRef>) {
        let mut interfaces = InterfaceIndex {
            netns_cookie: 42,
            ..InterfaceIndex::default()
        };
        let veth = Arc::new(InterfaceRef {
            name: "veth0".into(),
            index: 7,
            netns_cookie: 42,
            netns: "/run/netns/a".into(),
        });
        interfaces.by_index.insert(7, veth.clone());
        (interfaces, veth)
    }

    fn key(port_a: u16, port_b: u16) -> FlowKey {
        FlowKey {
            addr_a: ipv4_mapped([198, 18, 0, 1]),
            addr_b: ipv4_mapped([198, 18, 0, 2]),
            ifindex: 7,
            port_a,
            port_b,
            protocol: 6,
            ip_version: 4,
            ..FlowKey::default()
        }
    }

    #[test]
    fn orients_by_initiator_and_splits_counters() {
        let (interfaces, veth) = interfaces();
        let assembler = Assembler::new(
            "node-1",
            Arc::new(std::sync::RwLock::new(interfaces)),
            Arc::new(DropNames::default()),
        );
        // B (198.18.0.2:40000) connected to A (198.18.0.1:7070).
        let raw = RawFlow {
            key: key(7070, 40000),
            stats: FlowStats {
                packets: [4, 5],
                bytes: [400, 5000],
                first_seen_ns: 1_000_000_000,
                last_seen_ns: 3_000_000_000,
                tcp_flags: [TCP_SYN | TCP_ACK | TCP_FIN, TCP_SYN | TCP_ACK | TCP_FIN],
                hook: [DIRECTION_EGRESS, DIRECTION_INGRESS],
                initiator: SIDE_B as u8,
                initiator_certain: 1,
                ..FlowStats::default()
            },
            reason: ReportReason::ConnectionEnd,
            answered: true,
            overdue: false,
        };
        let record = assembler.assemble(&raw, KernelClock::now());
        assert_eq!(record.source.ip, "198.18.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(record.source.port, 40000);
        assert_eq!((record.destination.port, record.request.packets), (7070, 5));
        assert_eq!((record.request.bytes, record.reply.bytes), (5000, 400));
        assert_eq!(record.request.direction, Some(TrafficDirection::Ingress));
        assert_eq!(record.outcome, Outcome::Closed);
        assert_eq!(record.interface, veth);
        assert_eq!(
            record.end.duration_since(record.start).unwrap(),
            Duration::from_secs(2)
        );
        assert!(record.initiator_certain);
    }

    #[test]
    fn uncertain_initiator_prefers_the_ephemeral_port_as_client() {
        let mut stats = FlowStats {
            initiator: SIDE_A as u8,
            hook: [HOOK_NONE; 2],
            ..FlowStats::default()
        };
        // A is on port 443, B on 51000: B is the client even though A was seen first.
        assert_eq!(initiator_side(&key(443, 51000), &stats), SIDE_B);
        // Both high ports: first seen wins.
        assert_eq!(initiator_side(&key(5000, 51000), &stats), SIDE_A);
        stats.initiator_certain = 1;
        assert_eq!(initiator_side(&key(443, 51000), &stats), SIDE_A);
    }

    #[test]
    fn ipv6_keys_stay_ipv6() {
        let mut addr = [0u8; 16];
        addr[0] = 0xfd;
        addr[15] = 1;
        assert_eq!(ip_from_key(addr, 6), "fd00::1".parse::<IpAddr>().unwrap());
    }
}
