use std::{net::IpAddr, sync::Arc, time::SystemTime};

use super::{EndpointMeta, PolicyVerdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrafficDirection {
    Ingress,
    Egress,
}

/// Why a record was emitted for a flow at this moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportReason {
    ActiveTimeout,
    IdleTimeout,
    ConnectionEnd,
    Shutdown,
    MapFull,
}

/// What became of a connection, as far as its packets tell (see `outcome.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Established,
    Closed,
    Reset,
    Refused,
    Unanswered,
    Answered,
    RequestOnly,
    /// An ICMP destination unreachable other than "port" (no route, host down, prohibited).
    Unreachable,
}

impl Outcome {
    /// Whether the traffic reached its peer: a handshake, a close or reset after one, or an
    /// answer. Drops on such a flow did not stop it (a retransmitted segment, or an ICMP echo
    /// reply freed with NO_SOCKET after a raw socket took its copy), so it stays forwarded.
    pub fn got_through(self) -> bool {
        matches!(
            self,
            Outcome::Established | Outcome::Closed | Outcome::Reset | Outcome::Answered
        )
    }
}

/// What became of a flow's traffic. FORWARDED: it got through, even if some packets were
/// dropped (their counters, reason and location stay on the record). DROPPED: the kernel dropped
/// packets and the flow did not get through (see [`Outcome::got_through`]). DENIED: dropped, or
/// never answered, where a network policy denies it. NOT_ENFORCED: a policy denies it, yet it
/// got through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Forwarded,
    Dropped,
    Denied,
    NotEnforced,
}

/// Union of TCP flags, as the `TCP_*` bits of flowd-common.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u16);

/// Interface a flow was seen on. Shared: thousands of records point at a handful of interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceRef {
    pub name: String,
    pub index: u32,
    pub netns_cookie: u64,
    /// Namespace path the agent attached through; empty for its own namespace.
    pub netns: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointAddr {
    pub ip: IpAddr,
    pub port: u16,
}

/// Traffic one side sent during the record's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SideCounters {
    pub packets: u64,
    pub bytes: u64,
    /// Union of the flags this side sent over the whole connection so far.
    pub tcp_flags: TcpFlags,
    /// Hook where this side's packets were seen; `None` if it sent nothing yet.
    pub direction: Option<TrafficDirection>,
    /// Packets and bytes of this side the kernel dropped (a subset of the above when the drop
    /// came after the interface hook).
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
}

/// The local process owning a connection's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub command: String,
    pub cgroup_id: u64,
    /// Whose socket: the source's (a client) or the destination's (a server).
    pub of_source: bool,
}

/// One connection on one interface, both directions, counted over `[start, end]`.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRecord {
    pub start: SystemTime,
    pub end: SystemTime,
    pub node: Arc<str>,
    pub ip_version: u8,
    pub protocol: u8,
    /// The side that started the connection.
    pub source: EndpointAddr,
    pub destination: EndpointAddr,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Source to destination.
    pub request: SideCounters,
    /// Destination to source.
    pub reply: SideCounters,
    pub interface: Arc<InterfaceRef>,
    pub verdict: Verdict,
    /// The kernel's reason for the last drop (`NETFILTER_DROP`...), and where it happened.
    pub drop_reason: Option<String>,
    pub drop_location: Option<String>,
    pub process: Option<Process>,
    /// Who the endpoints are (pod, node, service, world), filled by enrichment.
    pub source_meta: Option<Arc<EndpointMeta>>,
    pub destination_meta: Option<Arc<EndpointMeta>>,
    /// The policies' decision at each side, when policies are loaded.
    /// Shared: records decided by the same cached evaluation share one verdict.
    pub policy: Option<Arc<PolicyVerdict>>,
    pub outcome: Outcome,
    pub reason: ReportReason,
    /// Connections folded into this record (1 unless aggregated).
    pub connections: u64,
    pub initiator_certain: bool,
}

#[cfg(any(test, feature = "testing"))]
impl FlowRecord {
    /// A plausible finished UDP exchange 198.18.0.1:`source_port` -> 198.18.0.2:53, for tests and
    /// benchmarks that need records without a kernel.
    pub fn sample(source_port: u16) -> Self {
        let side = |packets, bytes, direction| SideCounters {
            packets,
            bytes,
            tcp_flags: TcpFlags::default(),
            direction: Some(direction),
            dropped_packets: 0,
            dropped_bytes: 0,
        };
        Self {
            start: SystemTime::UNIX_EPOCH,
            end: SystemTime::UNIX_EPOCH,
            node: Arc::from("node-1"),
            ip_version: 4,
            protocol: 17,
            source: EndpointAddr {
                ip: IpAddr::from([198, 18, 0, 1]),
                port: source_port,
            },
            destination: EndpointAddr {
                ip: IpAddr::from([198, 18, 0, 2]),
                port: 53,
            },
            icmp_type: 0,
            icmp_code: 0,
            request: side(1, 60, TrafficDirection::Egress),
            reply: side(1, 120, TrafficDirection::Ingress),
            interface: Arc::new(InterfaceRef {
                name: "veth0".into(),
                index: 2,
                netns_cookie: 1,
                netns: String::new(),
            }),
            verdict: Verdict::Forwarded,
            drop_reason: None,
            drop_location: None,
            process: None,
            source_meta: None,
            destination_meta: None,
            policy: None,
            outcome: Outcome::Answered,
            reason: ReportReason::IdleTimeout,
            connections: 1,
            initiator_certain: false,
        }
    }
}
