//! Kernel drops: `tp_btf/kfree_skb` (or, where that cannot load, the classic `skb:kfree_skb`
//! tracepoint) gives every freed skb with its drop reason. Every drop is counted by reason;
//! packets of the monitored namespace are parsed from the skb's network header (field offsets
//! come from the running kernel's BTF, patched in at load time) and merged into their
//! connection's entry.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use flowd_common::{
    connection_key_into, parse_network_into, FlowKey, FlowStats, PacketInfo, PacketSource,
    COUNTER_DROPS, COUNTER_NEW_FLOWS, DROP_REASON_SLOTS, HOOK_NONE, SIDE_A, SIDE_B,
};

use crate::{
    capture::init_flow_stats,
    maps::{count, DROP_REASONS, EEXIST, FLOWS, KERNEL_OFFSETS, NETNS_COOKIE, TRACEPOINT_FIELDS},
    zeroed::zeroed_local,
};

/// `SKB_NOT_DROPPED_YET`: not a drop.
const REASON_NOT_DROPPED: u32 = 0;

#[btf_tracepoint(function = "kfree_skb")]
pub fn flowd_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    on_drop(skb, location, reason);
    0
}

/// The fallback for kernels where tp_btf cannot load: the same event through tracefs.
#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn flowd_kfree_skb_tracepoint(ctx: TracePointContext) -> u32 {
    let fields = TRACEPOINT_FIELDS.load();
    if fields.valid == 0 {
        return 0;
    }
    // SAFETY: the offsets come from this kernel's format file for this tracepoint's record.
    let read = unsafe {
        (
            ctx.read_at::<u64>(fields.skbaddr as usize),
            ctx.read_at::<u64>(fields.location as usize),
            ctx.read_at::<u32>(fields.reason as usize),
        )
    };
    if let (Ok(skb), Ok(location), Ok(reason)) = read {
        on_drop(skb, location, reason);
    }
    0
}

/// Kernel memory from a base address, read with `bpf_probe_read_kernel`.
struct KernelBytes(u64);

impl PacketSource for KernelBytes {
    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        // SAFETY: probe reads fault safely on bad addresses and return an error.
        unsafe { bpf_probe_read_kernel((self.0 + offset as u64) as *const [u8; N]).ok() }
    }
}

#[inline(always)]
fn read<T>(base: u64, offset: u32) -> Option<T> {
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T).ok() }
}

#[inline(never)]
fn on_drop(skb: u64, location: u64, reason: u32) -> Option<()> {
    let offsets = KERNEL_OFFSETS.load();
    if reason == REASON_NOT_DROPPED || reason == offsets.reason_consumed || skb == 0 {
        return None;
    }
    let slot = reason.min(DROP_REASON_SLOTS - 1);
    if let Some(counter) = DROP_REASONS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *counter += 1 };
    }
    if offsets.valid == 0 {
        return None;
    }
    let dev: u64 = read(skb, offsets.skb_dev)?;
    if dev == 0 {
        return None;
    }
    // possible_net_t holds one pointer: the device's namespace.
    let net: u64 = read(dev, offsets.dev_nd_net)?;
    let cookie: u64 = read(net, offsets.net_cookie)?;
    // Keys name interfaces of the attach namespace only.
    if cookie != NETNS_COOKIE.load() {
        return None;
    }
    let ifindex: i32 = read(dev, offsets.dev_ifindex)?;
    let head: u64 = read(skb, offsets.skb_head)?;
    let network_header: u16 = read(skb, offsets.skb_network_header)?;
    let protocol: u16 = read(skb, offsets.skb_protocol)?;
    zeroed_local!(info: PacketInfo);
    parse_dropped(
        head + u64::from(network_header),
        u16::from_be(protocol),
        info,
    )?;
    count(COUNTER_DROPS);
    zeroed_local!(key: FlowKey);
    let side = connection_key_into(info, ifindex as u32, key);
    let key: &FlowKey = key;
    let bytes = u64::from(info.ip_len);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let drop = Dropped {
        side,
        bytes,
        reason,
        location,
        now,
        flags: info.tcp_flags,
    };
    match FLOWS.get_ptr_mut(key) {
        Some(stats) => record(stats, &drop),
        None => insert_dropped(key, &drop),
    }
    Some(())
}

/// One dropped packet: BPF functions take at most five arguments, so it travels as one.
struct Dropped {
    side: usize,
    bytes: u64,
    reason: u32,
    location: u64,
    now: u64,
    flags: u16,
}

/// Out of line, like the tc parser: its temporaries must not share the stack with the rest.
#[inline(never)]
fn parse_dropped(network_header: u64, ethertype: u16, info: &mut PacketInfo) -> Option<()> {
    parse_network_into(&KernelBytes(network_header), 0, ethertype, info).ok()
}

/// First sight of a connection is its drop: an entry with no forwarded packets.
#[inline(never)]
fn insert_dropped(key: &FlowKey, drop: &Dropped) {
    zeroed_local!(stats: FlowStats);
    init_flow_stats(stats, drop.side, 0, 0, drop.now, drop.flags, HOOK_NONE);
    if drop.side == SIDE_A {
        stats.dropped_packets[SIDE_A] = 1;
        stats.dropped_bytes[SIDE_A] = drop.bytes;
    } else {
        stats.dropped_packets[SIDE_B] = 1;
        stats.dropped_bytes[SIDE_B] = drop.bytes;
    }
    stats.drop_reason = drop.reason;
    stats.drop_location = drop.location;
    let stats: &FlowStats = stats;
    match FLOWS.insert(key, stats, BPF_NOEXIST as u64) {
        Ok(()) => {
            count(COUNTER_NEW_FLOWS);
        }
        Err(err) if err == -EEXIST => {
            if let Some(existing) = FLOWS.get_ptr_mut(key) {
                record(existing, drop);
            }
        }
        // A full map: the drop is still counted in COUNTER_DROPS.
        Err(_) => {}
    }
}

#[inline(always)]
fn record(stats: *mut FlowStats, drop: &Dropped) {
    let side = if drop.side == SIDE_A { SIDE_A } else { SIDE_B };
    let (bytes, reason, location, now) = (drop.bytes, drop.reason, drop.location, drop.now);
    // SAFETY: map value pointer valid for this run; counters shared between CPUs.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
            &raw mut (*stats).dropped_packets[side],
            1,
        );
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
            &raw mut (*stats).dropped_bytes[side],
            bytes,
        );
        (*stats).drop_reason = reason;
        (*stats).drop_location = location;
        (*stats).last_seen_ns = now;
    }
}
