//! Keys, counters and events exchanged between the tc programs and the agent.

/// Packet seen on its way into the interface (tc ingress).
pub const DIRECTION_INGRESS: u8 = 0;
/// Packet seen on its way out of the interface (tc egress).
pub const DIRECTION_EGRESS: u8 = 1;

pub const TCP_FIN: u16 = 0x01;
pub const TCP_SYN: u16 = 0x02;
pub const TCP_RST: u16 = 0x04;
pub const TCP_PSH: u16 = 0x08;
pub const TCP_ACK: u16 = 0x10;
pub const TCP_URG: u16 = 0x20;
pub const TCP_ECE: u16 = 0x40;
pub const TCP_CWR: u16 = 0x80;
/// Flags after which a TCP connection is over and its flow can be reported early.
pub const TCP_END_FLAGS: u16 = TCP_FIN | TCP_RST;

/// One connection as the kernel aggregates it: both directions of a 5-tuple on one interface.
///
/// Endpoint A is the lower of the two (address, port) pairs, so a packet and its reply land on
/// the same entry; which side started the connection is recorded in [`FlowStats::initiator`].
/// IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) so both families share one layout.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub addr_a: [u8; 16],
    pub addr_b: [u8; 16],
    /// The interface in the agent's attach namespace. Not the namespace itself: it is the same
    /// for every entry of one load, and each byte of the key is hashed and compared per packet.
    pub ifindex: u32,
    pub port_a: u16,
    pub port_b: u16,
    pub protocol: u8,
    /// 4 or 6.
    pub ip_version: u8,
    /// ICMP type/code; echo replies are folded onto the request type so both directions of a
    /// ping share one entry.
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// A word, not bytes: zeroing a byte array compiles to a byte loop on the BPF target.
    pub _pad: u32,
}

crate::zeroed::zeroable!(FlowKey, FlowStats);

/// Index into the per-side arrays of [`FlowStats`]: traffic sent by endpoint A, or by B.
pub const SIDE_A: usize = 0;
pub const SIDE_B: usize = 1;

/// `FlowStats::hook` before a side has sent anything.
pub const HOOK_NONE: u8 = 0xff;

/// Counters of one connection, per side, updated in place by every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowStats {
    pub packets: [u64; 2],
    /// IP bytes (IP header and payload), counted per wire segment even for GSO packets.
    pub bytes: [u64; 2],
    /// `bpf_ktime_get_boot_ns` of the first and last packet, either side.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Union of the TCP flags each side sent (`TCP_*`).
    pub tcp_flags: [u16; 2],
    /// tc hook (`DIRECTION_*`) where each side's packets were seen, `HOOK_NONE` if none yet.
    pub hook: [u8; 2],
    /// Side that sent the packet creating the entry, corrected for a SYN-ACK (its peer started).
    pub initiator: u8,
    /// 1 when `initiator` is known from a SYN or SYN-ACK rather than guessed from first sight.
    pub initiator_certain: u8,
    /// Last ICMP/ICMPv6 destination-unreachable answer to this connection, `type << 8 | code`.
    pub icmp_error: u16,
    /// Which side's socket the owner below belongs to, plus one (0: no owner known).
    pub owner_side: u8,
    /// 1 when the owner is the connection's own socket (its cgroup_skb entry or the sending
    /// socket's cookie); 0 when it is a guess from the bound port, which a better source replaces.
    pub owner_exact: u8,
    pub _pad: [u8; 4],
    /// Packets and IP bytes of each side freed by the kernel as drops (kfree_skb). A packet
    /// dropped after the tc hook saw it counts in `packets` too.
    pub dropped_packets: [u64; 2],
    pub dropped_bytes: [u64; 2],
    /// Kernel address where the last drop happened (the tracepoint's `location`).
    pub drop_location: u64,
    /// `enum skb_drop_reason` of the last drop; 0 when none.
    pub drop_reason: u32,
    /// The local process owning the connection's socket, when known (0 otherwise).
    pub owner_pid: u32,
    pub owner_cgroup: u64,
    pub owner_comm: [u8; 16],
}

/// Who opened a socket: recorded in process context by the cgroup socket hooks, in the socket's
/// own storage.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SocketOwner {
    pub pid: u32,
    pub _pad: u32,
    pub cgroup_id: u64,
    pub comm: [u8; 16],
}

/// Byte offsets into kernel structures, read from the running kernel's BTF at load time: the drop
/// program cannot use CO-RE relocations, so it reads fields at these offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KernelOffsets {
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_protocol: u32,
    pub skb_dev: u32,
    pub dev_ifindex: u32,
    pub dev_nd_net: u32,
    pub net_cookie: u32,
    /// `SKB_CONSUMED`: frees that are not drops.
    pub reason_consumed: u32,
    /// Non-zero once the agent has filled these in; the drop program does nothing before.
    pub valid: u32,
}

/// Where the fields of the classic `skb:kfree_skb` tracepoint's record sit, from its tracefs
/// format file (they moved between kernels: 6.11 added `rx_sk` before `protocol`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TracepointFields {
    pub skbaddr: u32,
    pub location: u32,
    pub reason: u32,
    /// Non-zero once the agent has filled these in.
    pub valid: u32,
}

/// Slots of the host-wide drop counter by reason (`DROP_REASONS`); reasons beyond the last
/// slot (subsystem reasons carry high bits) share it.
pub const DROP_REASON_SLOTS: u32 = 256;

// Kinds 1 and 2 (new flow, connection end) were notices that took ring space from counts; they
// are the `new_flows` and `flow_ends` counters now. An event of kind 1 or 2 is malformed.
/// The flow map was full: the event carries this packet's counts, which are in no map entry.
pub const EVENT_MAP_FULL: u32 = 3;
/// A new connection (a SYN) reused the tuple of one that had ended: the event carries the ended
/// connection's final counters; its map entry now counts the new connection.
pub const EVENT_FLOW_RESTART: u32 = 4;

/// Ring-buffer record. Rare by design, and only ever carrying counts: map overflow and the final
/// counters of a connection whose tuple a new one took.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEvent {
    pub key: FlowKey,
    pub stats: FlowStats,
    pub kind: u32,
    pub _pad: u32,
}

/// What the agent has already reported of a connection still in `FLOWS`, kept in the `REPORTED`
/// map (written by the agent only) so that an agent restarted over pinned maps reports only
/// what no record carried yet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReportedCounts {
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub dropped_packets: [u64; 2],
    pub dropped_bytes: [u64; 2],
    /// Kernel clock of the last packet the previous record covered, and of that report.
    pub last_seen_ns: u64,
    pub reported_at_ns: u64,
}

/// Indices of the per-CPU loss and health counters (`COUNTERS` map).
pub const COUNTER_NOT_IP: u32 = 0;
pub const COUNTER_MALFORMED: u32 = 1;
pub const COUNTER_MAP_FULL: u32 = 2;
pub const COUNTER_RINGBUF_FULL: u32 = 3;
/// Kernel drops seen in the monitored namespace.
pub const COUNTER_DROPS: u32 = 4;
/// Connections that got a map entry, and connections that saw FIN or RST: counted here rather
/// than announced on the ring buffer, whose space is for events that carry counts.
pub const COUNTER_NEW_FLOWS: u32 = 5;
pub const COUNTER_FLOW_ENDS: u32 = 6;
pub const COUNTER_COUNT: u32 = 7;

/// Names of the counters, indexed like the `COUNTER_*` constants.
pub const COUNTER_NAMES: [&str; COUNTER_COUNT as usize] = [
    "not_ip",
    "malformed",
    "flow_map_full",
    "ring_buffer_full",
    "kernel_drops",
    "new_flows",
    "flow_ends",
];

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data structs with explicit padding and no pointers.
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowStats {}
    unsafe impl aya::Pod for super::FlowEvent {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::TracepointFields {}
    unsafe impl aya::Pod for super::SocketOwner {}
    unsafe impl aya::Pod for super::ReportedCounts {}
}

// A padding byte the compiler inserts is not zeroed and would corrupt map keys.
const _: () = assert!(core::mem::size_of::<FlowKey>() == 48);
const _: () = assert!(core::mem::size_of::<FlowStats>() == 136);
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 192);
const _: () = assert!(core::mem::size_of::<SocketOwner>() == 32);
const _: () = assert!(core::mem::size_of::<ReportedCounts>() == 80);
