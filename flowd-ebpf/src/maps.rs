//! Maps and load-time globals shared by the tc programs and the drop program.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
    Global,
};
use flowd_common::{
    FlowEvent, FlowKey, FlowStats, KernelOffsets, ReportedCounts, TracepointFields, COUNTER_COUNT,
    COUNTER_RINGBUF_FULL, DROP_REASON_SLOTS,
};

pub const EEXIST: i32 = 17;

/// Cookie of the network namespace the agent attaches in, set at load time: the drop probe sees
/// drops in every namespace and keeps only those on this one's interfaces, which flow keys name
/// by ifindex alone.
#[unsafe(no_mangle)]
pub static NETNS_COOKIE: Global<u64> = Global::new(0);

/// Sizes are defaults; the agent overrides both at load time from its configuration.
#[map]
pub static FLOWS: HashMap<FlowKey, FlowStats> = HashMap::with_max_entries(65536, 0);

/// Written by the agent only (no program reads it): what it already reported of each flow,
/// pinned with `FLOWS` so a restarted agent does not report it twice.
#[map]
pub static REPORTED: HashMap<FlowKey, ReportedCounts> = HashMap::with_max_entries(65536, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// Kernel structure offsets for the drop program, filled from BTF by the agent at load time.
#[unsafe(no_mangle)]
pub static KERNEL_OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets {
    skb_head: 0,
    skb_network_header: 0,
    skb_protocol: 0,
    skb_dev: 0,
    dev_ifindex: 0,
    dev_nd_net: 0,
    net_cookie: 0,
    reason_consumed: 0,
    valid: 0,
});

/// Field offsets of the classic kfree_skb tracepoint's record, filled from tracefs at load time
/// when that tracepoint is the drop probe.
#[unsafe(no_mangle)]
pub static TRACEPOINT_FIELDS: Global<TracepointFields> = Global::new(TracepointFields {
    skbaddr: 0,
    location: 0,
    reason: 0,
    valid: 0,
});

/// Every kernel drop on the host by reason, any namespace: without BTF this is all the drop
/// probe can tell (the packet's addresses need sk_buff offsets).
#[map]
pub static DROP_REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_REASON_SLOTS, 0);

/// Bumps a per-CPU counter and returns its new value on this CPU.
#[inline(always)]
pub fn count(index: u32) -> u64 {
    match COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        Some(slot) => unsafe {
            *slot += 1;
            *slot
        },
        None => 0,
    }
}

#[inline(never)]
pub fn emit(key: &FlowKey, stats: &FlowStats, kind: u32) {
    match EVENTS.reserve::<FlowEvent>(0) {
        Some(mut entry) => {
            // Field by field into the reserved slot: a whole FlowEvent on the stack is 192 bytes.
            let event = entry.as_mut_ptr();
            // SAFETY: `event` points at a reserved, writable FlowEvent-sized slot.
            unsafe {
                (&raw mut (*event).key).write(*key);
                (&raw mut (*event).stats).write(*stats);
                (&raw mut (*event).kind).write(kind);
                (&raw mut (*event)._pad).write(0);
            }
            entry.submit(0);
        }
        None => {
            count(COUNTER_RINGBUF_FULL);
        }
    }
}
