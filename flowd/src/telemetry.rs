//! Counters every stage updates and the status call reads. Atomics and short locks only: the
//! status path must never slow the data path.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Mutex,
    },
    time::Instant,
};

mod counter;

pub use counter::{Counter, EventKind, ExportCount, Exporter};

/// Why records were lost: the `cause` label of `flowd_lost_records_total` and the keys of
/// GetStatus's `lost`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LostCause {
    /// A follower fell behind; it got a `LostRecords` marker to replay from the store.
    SlowSubscriber,
    /// The history refused a batch (disk full, I/O error).
    HistoryWriteFailed,
    /// Packets of a full flow map that reached the agent but found its own overflow table full
    /// too (as many flows as the map holds, per sweep).
    MapFullOverflowCapped,
    /// The kernel's ring buffer was full (a per-CPU kernel counter, not counted here).
    KernelRingBufferFull,
}

impl LostCause {
    pub fn as_str(self) -> &'static str {
        match self {
            LostCause::SlowSubscriber => "slow_subscriber",
            LostCause::HistoryWriteFailed => "history_write_failed",
            LostCause::MapFullOverflowCapped => "map_full_overflow_capped",
            LostCause::KernelRingBufferFull => "kernel_ring_buffer_full",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedInterface {
    pub name: String,
    pub index: u32,
    pub netns_cookie: u64,
    pub netns: String,
    pub mode: &'static str,
}

#[derive(Debug)]
pub struct Telemetry {
    pub started: Instant,
    pub node: String,
    pub flow_map_capacity: u64,
    pub active_flows: AtomicU64,
    pub flows_recorded: AtomicU64,
    pub subscribers: AtomicU32,
    /// Records the store stage holds in memory because the history cannot be written.
    pub history_held: AtomicU64,
    interfaces: Mutex<Vec<AttachedInterface>>,
    /// Kernel counters (summed over CPUs) and agent-side event counts.
    counters: Mutex<BTreeMap<Counter, u64>>,
    /// Records lost, by cause.
    lost: Mutex<BTreeMap<LostCause, u64>>,
    /// Records per second, smoothed over about a minute.
    rate: Mutex<f64>,
    pub programs: Mutex<Vec<String>>,
}

impl Telemetry {
    pub fn new(node: &str, flow_map_capacity: u64) -> Self {
        Self {
            started: Instant::now(),
            node: node.to_owned(),
            flow_map_capacity,
            active_flows: AtomicU64::new(0),
            flows_recorded: AtomicU64::new(0),
            subscribers: AtomicU32::new(0),
            history_held: AtomicU64::new(0),
            interfaces: Mutex::new(Vec::new()),
            counters: Mutex::new(BTreeMap::new()),
            lost: Mutex::new(BTreeMap::new()),
            rate: Mutex::new(0.0),
            programs: Mutex::new(Vec::new()),
        }
    }

    pub fn add_lost(&self, cause: LostCause, count: u64) {
        if let Ok(mut guard) = self.lost.lock() {
            *guard.entry(cause).or_default() += count;
        }
    }

    /// Losses by cause name: the agent's own, and the kernel ring buffer's (`with_zero_kernel`:
    /// also when it is 0, so a metric series exists before the first loss).
    pub fn lost(&self, with_zero_kernel: bool) -> BTreeMap<String, u64> {
        let mut lost: BTreeMap<String, u64> = self
            .lost
            .lock()
            .map(|g| g.iter().map(|(c, n)| (c.as_str().to_owned(), *n)).collect())
            .unwrap_or_default();
        if let Some(full) = self
            .counter(&Counter::RING_BUFFER_FULL)
            .filter(|n| with_zero_kernel || *n > 0)
        {
            lost.insert(LostCause::KernelRingBufferFull.as_str().to_owned(), full);
        }
        lost
    }

    /// Folds `count` records seen over `interval` into the smoothed rate.
    pub fn sample_rate(&self, count: u64, interval: std::time::Duration) {
        let seconds = interval.as_secs_f64();
        if seconds <= 0.0 {
            return;
        }
        let alpha = 1.0 - (-seconds / 60.0).exp();
        if let Ok(mut rate) = self.rate.lock() {
            *rate += alpha * (count as f64 / seconds - *rate);
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate.lock().map(|r| *r).unwrap_or(0.0)
    }

    pub fn set_interfaces(&self, interfaces: Vec<AttachedInterface>) {
        if let Ok(mut guard) = self.interfaces.lock() {
            *guard = interfaces;
        }
    }

    pub fn interfaces(&self) -> Vec<AttachedInterface> {
        self.interfaces
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    pub fn set_counter(&self, counter: Counter, value: u64) {
        if let Ok(mut guard) = self.counters.lock() {
            guard.insert(counter, value);
        }
    }

    pub fn add_counter(&self, counter: Counter, delta: u64) {
        if let Ok(mut guard) = self.counters.lock() {
            *guard.entry(counter).or_default() += delta;
        }
    }

    pub fn counter(&self, counter: &Counter) -> Option<u64> {
        self.counters.lock().ok()?.get(counter).copied()
    }

    /// Every counter by its name, as GetStatus and `/metrics` show them.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters
            .lock()
            .map(|g| g.iter().map(|(c, n)| (c.name(), *n)).collect())
            .unwrap_or_default()
    }

    pub fn record_flows(&self, count: usize) {
        self.flows_recorded
            .fetch_add(count as u64, Ordering::Relaxed);
    }
}
