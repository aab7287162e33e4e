//! Turns the kernel's view of a flow (key, counters, boot-clock times) into a [`FlowRecord`].

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use flowd_common::{FlowKey, FlowStats, DIRECTION_INGRESS};
use tokio::sync::mpsc;

use super::{Direction, FlowRecord, InterfaceRef, ReportReason, TcpFlags};

/// A flow's counters over one reporting window, as the capture stage hands them on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFlow {
    pub key: FlowKey,
    /// Counters of this window only; `first_seen_ns`/`last_seen_ns` bound the window.
    pub stats: FlowStats,
    pub reason: ReportReason,
}

/// Interfaces by (network namespace cookie, ifindex): ifindex alone is ambiguous across
/// namespaces.
pub type InterfaceIndex = HashMap<(u64, u32), Arc<InterfaceRef>>;

/// Converts boot-clock nanoseconds (what `bpf_ktime_get_boot_ns` returns) to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    wall_at_boot: SystemTime,
}

impl BootClock {
    pub fn now() -> Self {
        let since_boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(Duration::from)
            .unwrap_or_default();
        Self {
            wall_at_boot: SystemTime::now() - since_boot,
        }
    }

    pub fn to_wall(self, boot_ns: u64) -> SystemTime {
        self.wall_at_boot + Duration::from_nanos(boot_ns)
    }
}

pub fn ip_from_key(addr: [u8; 16], ip_version: u8) -> IpAddr {
    if ip_version == 4 {
        IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(addr))
    }
}

pub struct Assembler {
    node: Arc<str>,
    interfaces: InterfaceIndex,
}

impl Assembler {
    pub fn new(node: &str, interfaces: InterfaceIndex) -> Self {
        Self {
            node: Arc::from(node),
            interfaces,
        }
    }

    pub fn assemble(&self, raw: &RawFlow, clock: BootClock) -> FlowRecord {
        let key = &raw.key;
        let interface = self
            .interfaces
            .get(&(key.netns_cookie, key.ifindex))
            .cloned()
            .unwrap_or_else(|| {
                // Not one of ours by name (e.g. renamed since attach): keep the identity anyway.
                Arc::new(InterfaceRef {
                    name: String::new(),
                    index: key.ifindex,
                    netns_cookie: key.netns_cookie,
                    netns: String::new(),
                })
            });
        FlowRecord {
            start: clock.to_wall(raw.stats.first_seen_ns),
            end: clock.to_wall(raw.stats.last_seen_ns),
            node: self.node.clone(),
            ip_version: key.ip_version,
            protocol: key.protocol,
            source: ip_from_key(key.src_addr, key.ip_version),
            destination: ip_from_key(key.dst_addr, key.ip_version),
            source_port: key.src_port,
            destination_port: key.dst_port,
            icmp_type: key.icmp_type,
            icmp_code: key.icmp_code,
            packets: raw.stats.packets,
            bytes: raw.stats.bytes,
            tcp_flags: TcpFlags(raw.stats.tcp_flags),
            interface,
            direction: if key.direction == DIRECTION_INGRESS {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            reason: raw.reason,
        }
    }
}

/// The flow stage: raw kernel flows in, records out, until the capture side closes.
pub async fn run(
    assembler: Assembler,
    mut input: mpsc::Receiver<Vec<RawFlow>>,
    output: mpsc::Sender<Vec<FlowRecord>>,
) {
    while let Some(batch) = input.recv().await {
        let clock = BootClock::now();
        let records = batch
            .iter()
            .map(|raw| assembler.assemble(raw, clock))
            .collect();
        if output.send(records).await.is_err() {
            tracing::warn!("store stage stopped; flow stage exiting");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use flowd_common::{parse::ipv4_mapped, DIRECTION_EGRESS};

    use super::*;

    #[test]
    fn assembles_addresses_interface_and_times() {
        let mut interfaces = InterfaceIndex::new();
        let veth = Arc::new(InterfaceRef {
            name: "veth0".into(),
            index: 7,
            netns_cookie: 42,
            netns: "/run/netns/a".into(),
        });
        interfaces.insert((42, 7), veth.clone());
        let assembler = Assembler::new("node-1", interfaces);
        let raw = RawFlow {
            key: FlowKey {
                src_addr: ipv4_mapped([198, 18, 0, 1]),
                dst_addr: ipv4_mapped([198, 18, 0, 2]),
                netns_cookie: 42,
                ifindex: 7,
                src_port: 40000,
                dst_port: 7070,
                protocol: 6,
                ip_version: 4,
                direction: DIRECTION_EGRESS,
                ..FlowKey::default()
            },
            stats: FlowStats {
                packets: 3,
                bytes: 180,
                first_seen_ns: 1_000_000_000,
                last_seen_ns: 3_000_000_000,
                tcp_flags: 0x12,
                _pad: 0,
            },
            reason: ReportReason::ConnectionEnd,
        };
        let record = assembler.assemble(&raw, BootClock::now());
        assert_eq!(record.source, "198.18.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(record.destination, "198.18.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(record.interface, veth);
        assert_eq!(record.direction, Direction::Egress);
        assert_eq!(
            record.end.duration_since(record.start).unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(&*record.node, "node-1");
    }

    #[test]
    fn ipv6_keys_stay_ipv6() {
        let mut addr = [0u8; 16];
        addr[0] = 0xfd;
        addr[15] = 1;
        assert_eq!(ip_from_key(addr, 6), "fd00::1".parse::<IpAddr>().unwrap());
    }
}
