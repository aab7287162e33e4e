//! Keys, counters and events exchanged between the tc programs and the agent.

/// Packet seen on its way into the interface (tc ingress).
pub const DIRECTION_INGRESS: u8 = 0;
/// Packet seen on its way out of the interface (tc egress).
pub const DIRECTION_EGRESS: u8 = 1;

pub const TCP_FIN: u32 = 0x01;
pub const TCP_SYN: u32 = 0x02;
pub const TCP_RST: u32 = 0x04;
pub const TCP_PSH: u32 = 0x08;
pub const TCP_ACK: u32 = 0x10;
pub const TCP_URG: u32 = 0x20;
pub const TCP_ECE: u32 = 0x40;
pub const TCP_CWR: u32 = 0x80;
/// Flags after which a TCP connection is over and its flow can be reported early.
pub const TCP_END_FLAGS: u32 = TCP_FIN | TCP_RST;

/// One flow as the kernel aggregates it: an interface, a direction and a 5-tuple.
///
/// IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) so both families share one layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// Cookie of the interface's network namespace (set by the agent at load time): ifindex
    /// alone is ambiguous, both ends of a veth pair usually share one.
    pub netns_cookie: u64,
    pub ifindex: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    /// 4 or 6.
    pub ip_version: u8,
    pub direction: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub _pad: [u8; 11],
}

/// Counters of one flow, updated in place by every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowStats {
    pub packets: u64,
    /// IP bytes (IP header and payload), counted per wire segment even for GSO packets.
    pub bytes: u64,
    /// `bpf_ktime_get_boot_ns` of the first and last packet.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Union of the TCP flags seen (`TCP_*`).
    pub tcp_flags: u32,
    pub _pad: u32,
}

/// A flow appeared in the flow map.
pub const EVENT_NEW_FLOW: u32 = 1;
/// A TCP FIN or RST was seen for the first time on this flow.
pub const EVENT_FLOW_END: u32 = 2;
/// The flow map was full: the event carries this packet's counts, which are in no map entry.
pub const EVENT_MAP_FULL: u32 = 3;

/// Ring-buffer record. Rare by design: new flows, connection ends and map overflow only.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEvent {
    pub key: FlowKey,
    pub stats: FlowStats,
    pub kind: u32,
    pub _pad: u32,
}

/// Indices of the per-CPU loss and health counters (`COUNTERS` map).
pub const COUNTER_NOT_IP: u32 = 0;
pub const COUNTER_MALFORMED: u32 = 1;
pub const COUNTER_MAP_FULL: u32 = 2;
pub const COUNTER_RINGBUF_FULL: u32 = 3;
pub const COUNTER_PACKETS: u32 = 4;
pub const COUNTER_COUNT: u32 = 5;

/// Names of the counters, indexed like the `COUNTER_*` constants.
pub const COUNTER_NAMES: [&str; COUNTER_COUNT as usize] = [
    "not_ip",
    "malformed",
    "flow_map_full",
    "ring_buffer_full",
    "packets_observed",
];

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data structs with explicit padding and no pointers.
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowStats {}
    unsafe impl aya::Pod for super::FlowEvent {}
}

// A padding byte the compiler inserts is not zeroed and would corrupt map keys.
const _: () = assert!(core::mem::size_of::<FlowKey>() == 64);
const _: () = assert!(core::mem::size_of::<FlowStats>() == 40);
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 112);
