//! What capture hands on: a kernel flow's counters over one window, and the interfaces they
//! were seen on.

use std::{collections::HashMap, sync::Arc};

use flowd_common::{FlowKey, FlowStats, SIDE_A, SIDE_B};

use super::{InterfaceRef, ReportReason};

/// A connection's counters over one reporting window, as the capture stage hands them on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFlow {
    pub key: FlowKey,
    /// Packets and bytes of this window only (`first_seen_ns`/`last_seen_ns` bound it); flags,
    /// hooks and initiator as of now.
    pub stats: FlowStats,
    pub reason: ReportReason,
    /// The responder has sent something over the connection's life (not just this window).
    pub answered: bool,
    /// Unanswered for longer than the unanswered timeout.
    pub overdue: bool,
}

/// The attached interfaces by ifindex. An agent attaches in one network namespace, so ifindex
/// names an interface; flow keys leave the namespace out (the kernel hashes every key byte per
/// packet) and records take it from here.
#[derive(Debug, Default)]
pub struct InterfaceIndex {
    pub netns_cookie: u64,
    pub by_index: HashMap<u32, Arc<InterfaceRef>>,
}

/// The index as capture keeps it up to date while interfaces come and go.
pub type SharedInterfaces = Arc<std::sync::RwLock<InterfaceIndex>>;

/// The side that started the connection. The kernel knows for sure when it saw a SYN; otherwise
/// a well-known port (< 1024) facing a non-well-known one marks the server, and failing that the
/// side seen first is taken as the client.
pub fn initiator_side(key: &FlowKey, stats: &FlowStats) -> usize {
    let first_seen = if stats.initiator as usize == SIDE_B {
        SIDE_B
    } else {
        SIDE_A
    };
    if stats.initiator_certain != 0 || key.port_a == key.port_b {
        return first_seen;
    }
    match (key.port_a < 1024, key.port_b < 1024) {
        (true, false) => SIDE_B,
        (false, true) => SIDE_A,
        _ => first_seen,
    }
}

/// Whether the side that did not start the connection sent anything back.
pub fn answered(key: &FlowKey, stats: &FlowStats) -> bool {
    stats.packets[initiator_side(key, stats) ^ 1] > 0
}
