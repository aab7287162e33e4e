//! Deciding, from the kernel map's counters, which flows to report now and which to evict.
//!
//! Pure logic over `(key, stats)` snapshots and a clock reading, so it is tested without a kernel.

use std::{collections::HashMap, time::Duration};

use flowd_common::{FlowKey, FlowStats, ReportedCounts, HOOK_NONE, SIDE_A, SIDE_B, TCP_END_FLAGS};

use crate::model::{answered, RawFlow, ReportReason};

#[derive(Clone, Copy, Debug)]
pub struct SweepTimeouts {
    /// A flow still active is reported at least this often.
    pub active: Duration,
    /// A flow without packets for this long is over: reported and evicted.
    pub idle: Duration,
    /// After FIN/RST, wait this long without packets (the last ACKs) before reporting the end.
    pub end_grace: Duration,
    /// A request without any answer for this long is reported as unanswered.
    pub unanswered: Duration,
}

/// What was already reported for a flow still in the kernel map (shared with the kernel side so
/// that it can be kept in a pinned map across restarts).
type Reported = ReportedCounts;

trait Baseline {
    /// Nothing reported yet for the connection counted in `stats`.
    fn nothing(stats: &FlowStats) -> Self;
    /// The part of `stats` no record has carried yet.
    fn unreported(&self, stats: &FlowStats) -> FlowStats;
}

impl Baseline for Reported {
    fn nothing(stats: &FlowStats) -> Self {
        Self {
            last_seen_ns: stats.first_seen_ns,
            reported_at_ns: stats.first_seen_ns,
            ..Self::default()
        }
    }

    /// Counter deltas over a window that starts where the previous record ended (or at the
    /// connection's start).
    fn unreported(&self, stats: &FlowStats) -> FlowStats {
        let delta = |now: [u64; 2], before: [u64; 2]| {
            [
                now[SIDE_A].saturating_sub(before[SIDE_A]),
                now[SIDE_B].saturating_sub(before[SIDE_B]),
            ]
        };
        FlowStats {
            packets: delta(stats.packets, self.packets),
            bytes: delta(stats.bytes, self.bytes),
            dropped_packets: delta(stats.dropped_packets, self.dropped_packets),
            dropped_bytes: delta(stats.dropped_bytes, self.dropped_bytes),
            first_seen_ns: if self.packets == [0, 0] {
                stats.first_seen_ns
            } else {
                self.last_seen_ns
            },
            ..*stats
        }
    }
}

#[derive(Debug, Default)]
pub struct SweepOutcome {
    pub records: Vec<RawFlow>,
    /// Keys to delete from the kernel map (and their baselines).
    pub evict: Vec<FlowKey>,
    /// Flows reported and still tracked: what the records so far carried of each.
    pub baselines: Vec<(FlowKey, ReportedCounts)>,
    /// Flows whose baseline is void: their tuple started a new connection.
    pub forgotten: Vec<FlowKey>,
}

/// Overflowing flows kept between sweeps unless `with_overflow_limit` says otherwise.
const DEFAULT_OVERFLOW_LIMIT: usize = 65_536;

pub struct Sweeper {
    timeouts: SweepTimeouts,
    reported: HashMap<FlowKey, Reported>,
    /// Counts that reached us through the ring buffer because the map was full; at most
    /// `overflow_limit` flows between sweeps, so a flood costs bounded memory.
    overflow: HashMap<FlowKey, FlowStats>,
    overflow_limit: usize,
    /// Packets that found `overflow` full too, since the last `take_capped`.
    capped: u64,
    /// Connections whose tuple a new connection took over, with their final counters.
    restarted: Vec<RawFlow>,
    forgotten: Vec<FlowKey>,
}

impl Sweeper {
    pub fn new(timeouts: SweepTimeouts) -> Self {
        Self {
            timeouts,
            reported: HashMap::new(),
            overflow: HashMap::new(),
            overflow_limit: DEFAULT_OVERFLOW_LIMIT,
            capped: 0,
            restarted: Vec::new(),
            forgotten: Vec::new(),
        }
    }

    /// Takes over what a previous agent reported of the flows still in the (pinned) map, so
    /// that only what no record carried is reported again.
    pub fn adopt(&mut self, baselines: impl IntoIterator<Item = (FlowKey, ReportedCounts)>) {
        self.reported.extend(baselines);
    }

    /// At most `flows` distinct overflowing flows are kept between sweeps (the agent uses the
    /// kernel map's size).
    pub fn with_overflow_limit(mut self, flows: usize) -> Self {
        self.overflow_limit = flows;
        self
    }

    /// Packets lost because the overflow table was full, since the last call.
    pub fn take_capped(&mut self) -> u64 {
        std::mem::take(&mut self.capped)
    }

    /// Folds a packet that found the flow map full into the next sweep's records.
    pub fn add_overflow(&mut self, key: FlowKey, stats: FlowStats) {
        if self.overflow.len() >= self.overflow_limit && !self.overflow.contains_key(&key) {
            self.capped = self
                .capped
                .saturating_add(stats.packets[SIDE_A])
                .saturating_add(stats.packets[SIDE_B]);
            return;
        }
        let entry = self.overflow.entry(key).or_insert(FlowStats {
            packets: [0; 2],
            bytes: [0; 2],
            tcp_flags: [0; 2],
            dropped_packets: [0; 2],
            dropped_bytes: [0; 2],
            ..stats
        });
        // Saturating: an event is kernel memory, and a corrupt one must not panic the agent.
        for side in [SIDE_A, SIDE_B] {
            entry.packets[side] = entry.packets[side].saturating_add(stats.packets[side]);
            entry.bytes[side] = entry.bytes[side].saturating_add(stats.bytes[side]);
            entry.tcp_flags[side] |= stats.tcp_flags[side];
            entry.dropped_packets[side] =
                entry.dropped_packets[side].saturating_add(stats.dropped_packets[side]);
            entry.dropped_bytes[side] =
                entry.dropped_bytes[side].saturating_add(stats.dropped_bytes[side]);
            if stats.hook[side] != HOOK_NONE {
                entry.hook[side] = stats.hook[side];
            }
        }
        entry.last_seen_ns = entry.last_seen_ns.max(stats.last_seen_ns);
    }

    /// A connection ended and a new one took its tuple (the kernel restarted the map entry):
    /// `stats` are the ended connection's final counters. It is reported as ended at the next
    /// sweep, and the entry's new counters start from nothing.
    pub fn add_restarted(&mut self, key: FlowKey, stats: FlowStats) {
        let previous = self
            .reported
            .remove(&key)
            .unwrap_or_else(|| Reported::nothing(&stats));
        self.forgotten.push(key);
        let answered = answered(&key, &stats);
        self.restarted.push(RawFlow {
            key,
            stats: previous.unreported(&stats),
            reason: ReportReason::ConnectionEnd,
            answered,
            overdue: false,
        });
    }

    /// Looks at every flow in the map. With `flush`, everything is reported and evicted (shutdown).
    pub fn sweep(
        &mut self,
        entries: impl IntoIterator<Item = (FlowKey, FlowStats)>,
        now_ns: u64,
        flush: bool,
    ) -> SweepOutcome {
        // Ended connections first: a restarted tuple's old connection precedes its new one.
        let mut outcome = SweepOutcome {
            records: std::mem::take(&mut self.restarted),
            forgotten: std::mem::take(&mut self.forgotten),
            ..SweepOutcome::default()
        };
        let mut still_tracked = HashMap::with_capacity(self.reported.len());
        let active_ns = self.timeouts.active.as_nanos() as u64;
        let idle_ns = self.timeouts.idle.as_nanos() as u64;
        let grace_ns = self.timeouts.end_grace.as_nanos() as u64;

        let unanswered_ns = self.timeouts.unanswered.as_nanos() as u64;
        for (key, stats) in entries {
            let previous = self
                .reported
                .get(&key)
                .copied()
                .unwrap_or_else(|| Reported::nothing(&stats));
            let quiet_ns = now_ns.saturating_sub(stats.last_seen_ns);
            let flags = stats.tcp_flags[SIDE_A] | stats.tcp_flags[SIDE_B];
            let ended = flags & TCP_END_FLAGS != 0 && quiet_ns >= grace_ns;
            let reason = if flush {
                Some(ReportReason::Shutdown)
            } else if ended {
                Some(ReportReason::ConnectionEnd)
            } else if quiet_ns >= idle_ns {
                Some(ReportReason::IdleTimeout)
            } else if now_ns.saturating_sub(previous.reported_at_ns) >= active_ns {
                Some(ReportReason::ActiveTimeout)
            } else {
                None
            };
            let evict = matches!(
                reason,
                Some(
                    ReportReason::Shutdown
                        | ReportReason::ConnectionEnd
                        | ReportReason::IdleTimeout
                )
            );
            let window = previous.unreported(&stats);
            let active = window.packets != [0, 0] || window.dropped_packets != [0, 0];
            if let Some(reason) = reason.filter(|_| active) {
                let answered = answered(&key, &stats);
                outcome.records.push(RawFlow {
                    key,
                    stats: window,
                    reason,
                    answered,
                    overdue: !answered
                        && now_ns.saturating_sub(stats.first_seen_ns) >= unanswered_ns,
                });
            }
            if evict {
                outcome.evict.push(key);
            } else if reason.is_some() {
                let baseline = Reported {
                    packets: stats.packets,
                    bytes: stats.bytes,
                    dropped_packets: stats.dropped_packets,
                    dropped_bytes: stats.dropped_bytes,
                    last_seen_ns: stats.last_seen_ns,
                    reported_at_ns: now_ns,
                };
                still_tracked.insert(key, baseline);
                outcome.baselines.push((key, baseline));
            } else {
                still_tracked.insert(key, previous);
            }
        }
        // Flows gone from the map (evicted elsewhere) drop out of `reported` here.
        self.reported = still_tracked;

        for (key, stats) in self.overflow.drain() {
            outcome.records.push(RawFlow {
                key,
                stats,
                reason: ReportReason::MapFull,
                answered: answered(&key, &stats),
                overdue: false,
            });
        }
        outcome
    }

    pub fn tracked(&self) -> usize {
        self.reported.len()
    }
}

#[cfg(test)]
mod tests;
