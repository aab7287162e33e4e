use flowd_common::{DIRECTION_EGRESS, TCP_ACK, TCP_FIN, TCP_SYN};

use super::*;

const SEC: u64 = 1_000_000_000;

fn sweeper() -> Sweeper {
    Sweeper::new(SweepTimeouts {
        active: Duration::from_secs(5),
        idle: Duration::from_secs(15),
        end_grace: Duration::from_secs(1),
        unanswered: Duration::from_secs(3),
    })
}

fn key(port: u16) -> FlowKey {
    FlowKey {
        port_a: port,
        port_b: 40000,
        protocol: 6,
        ip_version: 4,
        ..FlowKey::default()
    }
}

/// A connection started by side A; `reply` packets and bytes came back from B.
fn stats(packets: u64, bytes: u64, reply: u64, first: u64, last: u64, flags: u16) -> FlowStats {
    FlowStats {
        packets: [packets, reply],
        bytes: [bytes, reply * 100],
        first_seen_ns: first,
        last_seen_ns: last,
        tcp_flags: [flags, flags],
        hook: [DIRECTION_EGRESS, if reply > 0 { 0 } else { HOOK_NONE }],
        initiator: 0,
        initiator_certain: 1,
        ..FlowStats::default()
    }
}

#[test]
fn young_flow_is_not_reported() {
    let mut s = sweeper();
    let out = s.sweep(
        [(key(1), stats(3, 300, 0, 10 * SEC, 11 * SEC, TCP_SYN))],
        12 * SEC,
        false,
    );
    assert!(out.records.is_empty());
    assert!(out.evict.is_empty());
}

#[test]
fn active_flow_reports_deltas_of_both_sides_each_active_timeout() {
    let mut s = sweeper();
    let first = s.sweep(
        [(key(1), stats(10, 1000, 4, 0, 5 * SEC, TCP_ACK))],
        5 * SEC,
        false,
    );
    assert_eq!(first.records.len(), 1);
    let record = first.records[0];
    assert_eq!(
        (record.stats.packets, record.stats.bytes),
        ([10, 4], [1000, 400])
    );
    assert_eq!(record.reason, ReportReason::ActiveTimeout);
    assert_eq!(record.stats.first_seen_ns, 0);
    assert!(record.answered);
    assert!(first.evict.is_empty(), "active flows stay in the map");

    let out = s.sweep(
        [(key(1), stats(15, 1500, 5, 0, 7 * SEC, TCP_ACK))],
        7 * SEC,
        false,
    );
    assert!(out.records.is_empty(), "not due yet");

    let second = s.sweep(
        [(key(1), stats(25, 2600, 6, 0, 10 * SEC, TCP_ACK))],
        10 * SEC,
        false,
    );
    let record = second.records[0];
    assert_eq!(
        (record.stats.packets, record.stats.bytes),
        ([15, 2], [1600, 200])
    );
    assert_eq!(
        record.stats.first_seen_ns,
        5 * SEC,
        "window starts where the last ended"
    );
}

#[test]
fn quiet_active_flow_sends_no_empty_record() {
    let mut s = sweeper();
    s.sweep(
        [(key(1), stats(10, 1000, 1, 0, 5 * SEC, TCP_ACK))],
        5 * SEC,
        false,
    );
    let out = s.sweep(
        [(key(1), stats(10, 1000, 1, 0, 5 * SEC, TCP_ACK))],
        11 * SEC,
        false,
    );
    assert!(out.records.is_empty());
}

#[test]
fn fin_reports_after_grace_and_evicts() {
    let mut s = sweeper();
    let flags = TCP_SYN | TCP_ACK | TCP_FIN;
    let early = s.sweep(
        [(key(1), stats(6, 400, 5, 0, SEC, flags))],
        SEC + SEC / 2,
        false,
    );
    assert!(early.records.is_empty(), "grace not over");
    let out = s.sweep(
        [(key(1), stats(7, 452, 5, 0, SEC + SEC / 2, flags))],
        3 * SEC,
        false,
    );
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.records[0].reason, ReportReason::ConnectionEnd);
    assert_eq!(out.records[0].stats.packets, [7, 5]);
    assert_eq!(out.evict, vec![key(1)]);
    assert_eq!(s.tracked(), 0);
}

#[test]
fn idle_flow_is_evicted_with_its_unreported_remainder() {
    let mut s = sweeper();
    s.sweep([(key(1), stats(4, 400, 0, 0, 5 * SEC, 0))], 5 * SEC, false);
    let out = s.sweep([(key(1), stats(6, 700, 0, 0, 6 * SEC, 0))], 21 * SEC, false);
    assert_eq!(out.records[0].reason, ReportReason::IdleTimeout);
    assert_eq!(
        (out.records[0].stats.packets, out.records[0].stats.bytes),
        ([2, 0], [300, 0])
    );
    assert_eq!(out.evict, vec![key(1)]);
}

#[test]
fn unanswered_after_the_timeout_not_before() {
    let mut s = sweeper();
    let out = s.sweep([(key(1), stats(1, 60, 0, 0, 0, TCP_SYN))], 5 * SEC, false);
    assert!(out.records[0].overdue && !out.records[0].answered);
    let mut s = sweeper();
    let out = s.sweep([(key(1), stats(1, 60, 0, 0, 0, TCP_SYN))], 2 * SEC, true);
    assert!(!out.records[0].overdue, "2s < 3s unanswered timeout");
}

#[test]
fn flush_reports_everything_unreported() {
    let mut s = sweeper();
    let out = s.sweep(
        [
            (key(1), stats(1, 60, 0, 0, SEC, TCP_SYN)),
            (key(2), stats(2, 120, 1, 0, SEC, 0)),
        ],
        SEC,
        true,
    );
    assert_eq!(out.records.len(), 2);
    assert!(out
        .records
        .iter()
        .all(|r| r.reason == ReportReason::Shutdown));
    assert_eq!(out.evict.len(), 2);
}

#[test]
fn overflow_counts_merge_per_key_and_drain_once() {
    let mut s = sweeper();
    s.add_overflow(key(9), stats(1, 100, 0, 2 * SEC, 2 * SEC, TCP_SYN));
    s.add_overflow(key(9), stats(1, 50, 1, 3 * SEC, 3 * SEC, TCP_ACK));
    let out = s.sweep([], 4 * SEC, false);
    assert_eq!(out.records.len(), 1);
    let record = out.records[0];
    assert_eq!(record.reason, ReportReason::MapFull);
    assert_eq!(
        (record.stats.packets, record.stats.bytes),
        ([2, 1], [150, 100])
    );
    assert_eq!(
        (record.stats.first_seen_ns, record.stats.last_seen_ns),
        (2 * SEC, 3 * SEC)
    );
    assert_eq!(record.stats.tcp_flags[0], TCP_SYN | TCP_ACK);
    assert!(s.sweep([], 5 * SEC, false).records.is_empty());
}

#[test]
fn a_flow_seen_only_as_drops_is_reported() {
    let mut s = sweeper();
    let dropped = FlowStats {
        dropped_packets: [2, 0],
        dropped_bytes: [120, 0],
        drop_reason: 6,
        ..stats(0, 0, 0, 0, SEC, 0)
    };
    let out = s.sweep([(key(1), dropped)], 5 * SEC, false);
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.records[0].stats.dropped_packets, [2, 0]);
    assert_eq!(out.records[0].stats.drop_reason, 6);
}

#[test]
fn flows_gone_from_the_map_are_forgotten() {
    let mut s = sweeper();
    s.sweep(
        [(key(1), stats(10, 1000, 0, 0, 5 * SEC, 0))],
        5 * SEC,
        false,
    );
    assert_eq!(s.tracked(), 1);
    s.sweep([], 6 * SEC, false);
    assert_eq!(s.tracked(), 0);
}

#[test]
fn a_restarted_tuple_reports_the_ended_connection_and_counts_the_new_one_from_nothing() {
    let mut s = sweeper();
    // The first connection is reported once while active (10 packets so far).
    let first = s.sweep(
        [(key(7), stats(10, 1000, 4, 0, 5 * SEC, TCP_SYN | TCP_ACK))],
        5 * SEC,
        false,
    );
    assert_eq!(first.records.len(), 1);
    // It ends with 12 packets; a SYN on the same tuple restarts the kernel entry.
    s.add_restarted(
        key(7),
        stats(12, 1200, 5, 0, 6 * SEC, TCP_SYN | TCP_ACK | TCP_FIN),
    );
    let next = s.sweep(
        [(key(7), stats(1, 60, 0, 6 * SEC, 6 * SEC, TCP_SYN))],
        11 * SEC,
        false,
    );
    let ended = &next.records[0];
    assert_eq!(ended.reason, ReportReason::ConnectionEnd);
    assert_eq!(
        ended.stats.packets,
        [2, 1],
        "only what the earlier record did not carry"
    );
    assert!(
        !next.evict.contains(&key(7)),
        "the entry now counts the new connection"
    );
    // The new connection's counters start from nothing, not from the old baseline: its first
    // packet is reported beside the ended connection, the rest later.
    let new = &next.records[1];
    assert_eq!(new.stats.packets, [1, 0]);
    assert_eq!(new.stats.first_seen_ns, 6 * SEC);
    let later = s.sweep(
        [(
            key(7),
            stats(3, 180, 1, 6 * SEC, 12 * SEC, TCP_SYN | TCP_ACK),
        )],
        17 * SEC,
        false,
    );
    assert_eq!(later.records.len(), 1);
    assert_eq!(later.records[0].stats.packets, [2, 1]);
}
