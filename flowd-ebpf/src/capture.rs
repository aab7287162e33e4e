//! tc ingress/egress: parse, then aggregate into `FLOWS`. Observing never changes a packet's fate:
//! every path returns `TC_ACT_UNSPEC` (tcx: next program), whatever happens here.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_UNSPEC},
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    macros::classifier,
    programs::TcContext,
};
use aya_log_ebpf::warn;
use flowd_common::{
    connection_key_into, parse_packet_into, parse_quoted_into, unreachable_error, FlowKey,
    FlowStats, PacketInfo, PacketSource, ParseError, COUNTER_FLOW_ENDS, COUNTER_MALFORMED,
    COUNTER_MAP_FULL, COUNTER_NEW_FLOWS, COUNTER_NOT_IP, DIRECTION_EGRESS, DIRECTION_INGRESS,
    EVENT_FLOW_RESTART, EVENT_MAP_FULL, HOOK_NONE, SIDE_A, SIDE_B, TCP_ACK, TCP_END_FLAGS, TCP_SYN,
};

use crate::{
    maps::{count, emit, EEXIST, FLOWS},
    owners::fill_owner,
    zeroed::zeroed_local,
};

#[classifier]
pub fn flowd_ingress(ctx: TcContext) -> i32 {
    observe(&ctx, DIRECTION_INGRESS);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn flowd_egress(ctx: TcContext) -> i32 {
    observe(&ctx, DIRECTION_EGRESS);
    TC_ACT_UNSPEC
}

struct Skb<'a>(&'a TcContext);

const MAX_DIRECT_OFFSET: usize = 1 << 12;

impl PacketSource for Skb<'_> {
    /// Direct packet access when the bytes are in the linear area (a bounds check, no call);
    /// `bpf_skb_load_bytes` otherwise, which also reaches paged data.
    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let start = self.0.data();
        let end = self.0.data_end();
        // The verifier only tracks packet pointers moved by a bounded amount; headers never start
        // this deep into a frame.
        if offset < MAX_DIRECT_OFFSET && start + offset + N <= end {
            // SAFETY: the range was just checked against the packet's end.
            Some(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) })
        } else {
            self.0.load::<[u8; N]>(offset).ok()
        }
    }

    /// Byte for byte into place when in the linear area: assembling the bytes into words first
    /// (what a returned array becomes) costs more than the copy.
    #[inline(always)]
    fn copy_into<const N: usize>(&self, offset: usize, out: &mut [u8; N]) -> bool {
        let start = self.0.data();
        let end = self.0.data_end();
        if offset < MAX_DIRECT_OFFSET && start + offset + N <= end {
            // SAFETY: the range was just checked against the packet's end; `out` holds N bytes.
            unsafe {
                core::ptr::copy_nonoverlapping((start + offset) as *const u8, out.as_mut_ptr(), N)
            };
            true
        } else {
            match self.0.load::<[u8; N]>(offset) {
                Ok(bytes) => {
                    *out = bytes;
                    true
                }
                Err(_) => false,
            }
        }
    }
}

/// An ICMP destination-unreachable answers the connection whose packet it quotes: mark that
/// connection (a UDP datagram to a closed port is refused this way).
#[inline(never)]
fn note_unreachable(ctx: &TcContext, outer: &PacketInfo, ifindex: u32) {
    zeroed_local!(quoted: PacketInfo);
    if parse_quoted(ctx, outer, quoted).is_err() {
        return;
    }
    zeroed_local!(key: FlowKey);
    connection_key_into(quoted, ifindex, key);
    if let Some(stats) = FLOWS.get_ptr_mut(key) {
        // SAFETY: map value pointer valid for this run.
        unsafe { (*stats).icmp_error = unreachable_error(outer) };
    }
}

#[inline(never)]
fn parse_quoted(
    ctx: &TcContext,
    outer: &PacketInfo,
    quoted: &mut PacketInfo,
) -> Result<(), ParseError> {
    parse_quoted_into(&Skb(ctx), outer, quoted)
}

/// Out of line: the parser's temporaries and the rest of `observe` never share the 512-byte
/// stack at the same time.
#[inline(never)]
fn parse(ctx: &TcContext, info: &mut PacketInfo) -> Result<(), ParseError> {
    parse_packet_into(&Skb(ctx), info)
}

#[inline(always)]
fn observe(ctx: &TcContext, direction: u8) {
    zeroed_local!(info: PacketInfo);
    match parse(ctx, info) {
        Ok(()) => {}
        Err(ParseError::NotIp) => {
            count(COUNTER_NOT_IP);
            return;
        }
        Err(_) => {
            count(COUNTER_MALFORMED);
            return;
        }
    }
    // SAFETY: the context pointer is valid for the whole program run.
    let skb = unsafe { &*ctx.skb.skb };
    if unreachable_error(info) != 0 {
        note_unreachable(ctx, info, skb.ifindex);
    }
    account(ctx, info, direction);
}

/// Counts one parsed packet into its connection's entry. Out of line so that `observe` keeps a
/// small frame: the verifier adds up the frames of every call chain against 512 bytes.
#[inline(never)]
fn account(ctx: &TcContext, info: &PacketInfo, direction: u8) {
    // SAFETY: the context pointer is valid for the whole program run.
    let skb = unsafe { &*ctx.skb.skb };
    zeroed_local!(key: FlowKey);
    let side = connection_key_into(info, skb.ifindex, key);
    let key: &FlowKey = key;
    let (packets, bytes) = wire_counts(skb.len, skb.gso_segs, info);

    if let Some(stats) = FLOWS.get_ptr_mut(key) {
        // SAFETY: map value pointer valid for this run.
        if info.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN && unsafe { has_ended(stats) } {
            restart(ctx, info, key, stats, side, packets, bytes, direction);
            return;
        }
        // The tick-resolution clock: the precise one costs about 35 ns per packet in a VM, and
        // a connection's last packet needs no finer time than the scheduler tick (1-4 ms).
        // Both are CLOCK_MONOTONIC; the agent never lets an end precede its start.
        // SAFETY: plain helper call.
        let now = unsafe { bpf_ktime_get_coarse_ns() };
        // Only a side's first packet at this hook may name a new owner: later packets of the
        // same socket would find the same answer, and forwarded traffic none at all. A guessed
        // owner is looked up again: the connection's own socket may have been seen since.
        // SAFETY: map value pointer valid for this run.
        let side_first_here = unsafe { (*stats).hook[side] } != direction;
        add(stats, side, packets, bytes, now, info.tcp_flags, direction);
        // SAFETY: map value pointer valid for this run.
        if side_first_here && unsafe { (*stats).owner_exact } == 0 {
            fill_owner(ctx, info, direction, side, stats);
        }
        return;
    }
    // A connection's start is worth the precise clock: it orders connections and measures how
    // long an answer took.
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    zeroed_local!(stats: FlowStats);
    init_flow_stats(stats, side, packets, bytes, now, info.tcp_flags, direction);
    fill_owner(ctx, info, direction, side, stats);
    let stats: &FlowStats = stats;
    match FLOWS.insert(key, stats, BPF_NOEXIST as u64) {
        Ok(()) => {
            count(COUNTER_NEW_FLOWS);
            if info.tcp_flags & TCP_END_FLAGS != 0 {
                count(COUNTER_FLOW_ENDS);
            }
        }
        // Another CPU created the entry between our lookup and insert.
        Err(err) if err == -EEXIST => {
            if let Some(stats) = FLOWS.get_ptr_mut(key) {
                add(stats, side, packets, bytes, now, info.tcp_flags, direction);
            }
        }
        // Map full: the packet's counts travel in the event instead of vanishing.
        Err(_) => map_full(ctx, key, stats),
    }
}

/// Whether the connection counted in `stats` has seen a FIN or RST.
///
/// # Safety
/// `stats` must point to a valid map value.
#[inline(always)]
unsafe fn has_ended(stats: *const FlowStats) -> bool {
    // SAFETY: per the caller.
    unsafe { ((*stats).tcp_flags[SIDE_A] | (*stats).tcp_flags[SIDE_B]) & TCP_END_FLAGS != 0 }
}

/// A SYN on the tuple of a connection that has ended starts a new connection (conntrack sees it
/// so): the ended one's final counters go to the agent in an event, and the entry starts over in
/// place. Another CPU adding to the entry meanwhile can land a packet in either connection.
/// Inlined: a BPF function takes at most five arguments.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn restart(
    ctx: &TcContext,
    info: &PacketInfo,
    key: &FlowKey,
    stats: *mut FlowStats,
    side: usize,
    packets: u64,
    bytes: u64,
    direction: u8,
) {
    // SAFETY: map value pointer valid for this run.
    emit(key, unsafe { &*stats }, EVENT_FLOW_RESTART);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: the map value is valid for writes of a FlowStats and 8-byte aligned.
    unsafe { <FlowStats as flowd_common::Zeroable>::zero_at(stats) };
    // SAFETY: as above; nothing else holds a reference to the value in this program.
    init_flow_stats(
        unsafe { &mut *stats },
        side,
        packets,
        bytes,
        now,
        info.tcp_flags,
        direction,
    );
    fill_owner(ctx, info, direction, side, stats);
    // SAFETY: as above.
    count(COUNTER_NEW_FLOWS);
}

/// Fills a zeroed entry for a connection's first packet. The first packet decides who started
/// it: a SYN's sender, a SYN-ACK's peer (certain), otherwise whoever was seen first (a guess the
/// agent may refine).
#[inline(always)]
pub fn init_flow_stats(
    stats: &mut FlowStats,
    side: usize,
    packets: u64,
    bytes: u64,
    now: u64,
    flags: u16,
    hook: u8,
) {
    stats.first_seen_ns = now;
    stats.last_seen_ns = now;
    stats.hook = [HOOK_NONE; 2];
    stats.initiator = side as u8;
    let syn = flags & TCP_SYN != 0;
    let ack = flags & TCP_ACK != 0;
    if syn {
        stats.initiator_certain = 1;
        if ack {
            stats.initiator = (side ^ 1) as u8;
        }
    }
    if side == SIDE_A {
        stats.packets[SIDE_A] = packets;
        stats.bytes[SIDE_A] = bytes;
        stats.tcp_flags[SIDE_A] = flags;
        stats.hook[SIDE_A] = hook;
    } else {
        stats.packets[SIDE_B] = packets;
        stats.bytes[SIDE_B] = bytes;
        stats.tcp_flags[SIDE_B] = flags;
        stats.hook[SIDE_B] = hook;
    }
}

#[inline(never)]
fn map_full(ctx: &TcContext, key: &FlowKey, stats: &FlowStats) {
    let overflowed = count(COUNTER_MAP_FULL);
    emit(key, stats, EVENT_MAP_FULL);
    // Logarithmic: says the map is full without flooding the log ring.
    if overflowed.is_power_of_two() {
        warn!(
            ctx,
            "flow map full: {} new-flow packets sent through the ring buffer on this CPU",
            overflowed
        );
    }
}

/// Packets and IP bytes as they are (or will be) on the wire: a GSO packet stands for `gso_segs`
/// segments, each carrying its own copy of the headers.
#[inline(always)]
fn wire_counts(skb_len: u32, gso_segs: u32, info: &PacketInfo) -> (u64, u64) {
    if gso_segs > 1 {
        let ip_bytes = skb_len.saturating_sub(info.l3_offset) as u64;
        let extra_headers = (gso_segs as u64 - 1) * info.headers_len as u64;
        (gso_segs as u64, ip_bytes + extra_headers)
    } else {
        // The IP header's length excludes Ethernet padding of tiny frames.
        (1, info.ip_len as u64)
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn add(
    stats: *mut FlowStats,
    side: usize,
    packets: u64,
    bytes: u64,
    now: u64,
    flags: u16,
    hook: u8,
) {
    // Constant indices keep the verifier's bounds tracking trivial.
    let side = if side == SIDE_A { SIDE_A } else { SIDE_B };
    // SAFETY: `stats` points into a map value that stays valid during the program run; the
    // counters are shared between CPUs, hence atomics (core's atomic types are not available on
    // the BPF target, the intrinsics compile to BPF atomic instructions).
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
            &raw mut (*stats).packets[side],
            packets,
        );
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*stats).bytes[side], bytes);
        (*stats).last_seen_ns = now;
        if (*stats).hook[side] != hook {
            (*stats).hook[side] = hook;
        }
        if flags != 0 {
            // Plain read-modify-write: the programs build for BPF cpu v1 (no fetching atomics).
            // Two CPUs racing on one flow's flags can at worst lose a bit or announce an end
            // twice; counters are unaffected.
            // Read both sides before this packet's flags land, or its own FIN/RST would count
            // as an earlier end and the end would never be announced.
            let ended_before = has_ended(stats);
            let before = (*stats).tcp_flags[side];
            if before | flags != before {
                (*stats).tcp_flags[side] = before | flags;
            }
            if !ended_before && flags & TCP_END_FLAGS != 0 {
                count(COUNTER_FLOW_ENDS);
            }
        }
    }
}
