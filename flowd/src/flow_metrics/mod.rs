//! Metrics from the flow records themselves: flows, connections, bytes and packets by verdict,
//! kernel drops by reason, denials by the deciding policy and rule, outcomes. Counted by a
//! pipeline stage before the store, read by `/metrics` at scrape time.
//!
//! Cardinality is bounded by construction: the fixed labels take few values (verdicts,
//! protocols, kernel drop reasons, the loaded policies' rules), the context labels that name
//! namespaces and workloads are off unless a setting turns them on for a family, and each
//! family holds at most `max_series` series. A record that would add one more is counted in
//! its family's `_other` series instead (context labels `_other`, fixed labels kept), and
//! `flowd_flow_metrics_folded_total` says how many were.

mod key;
mod settings;
mod stage;

use std::{collections::HashMap, sync::Mutex};

pub use key::{Base, Direction, Key, FOLDED};
pub use settings::{ContextLabel, FlowMetric, FlowMetricSettings, MetricLabels};
pub use stage::Counting;

use crate::model::FlowRecord;

/// One family's series so far.
#[derive(Debug, Default)]
struct Family {
    series: HashMap<Key<'static>, u64>,
    /// Records whose series the cap folded into `_other`.
    folded: u64,
}

/// A batch's sum for one series, and how many records made it.
#[derive(Debug, Default)]
struct Tally {
    value: u64,
    records: u64,
}

/// Families on, with their context labels.
#[derive(Debug)]
struct Counted {
    metric: FlowMetric,
    labels: Vec<ContextLabel>,
}

/// The totals, shared by the stage that counts and the scrape that reads.
#[derive(Debug)]
pub struct FlowMetrics {
    counted: Vec<Counted>,
    max_series: usize,
    families: Mutex<Vec<Family>>,
}

/// One family as a scrape reads it.
#[derive(Debug)]
pub struct FamilySnapshot {
    pub metric: FlowMetric,
    pub labels: Vec<ContextLabel>,
    pub series: Vec<(Key<'static>, u64)>,
    pub folded: u64,
}

impl FlowMetrics {
    pub fn new(settings: &FlowMetricSettings) -> Self {
        let mut metrics = settings.metrics.clone();
        metrics.sort();
        metrics.dedup();
        let counted: Vec<Counted> = metrics
            .into_iter()
            .map(|metric| Counted {
                metric,
                labels: settings.labels_of(metric),
            })
            .collect();
        let families = counted.iter().map(|_| Family::default()).collect();
        Self {
            counted,
            max_series: settings.max_series.max(1),
            families: Mutex::new(families),
        }
    }

    /// Adds a batch: tallied without the lock first, so the lock and the owned label values
    /// cost once per distinct series in the batch, not once per record.
    pub fn count(&self, records: &[FlowRecord]) {
        if self.counted.is_empty() || records.is_empty() {
            return;
        }
        let mut tallies: Vec<HashMap<Key<'_>, Tally>> =
            self.counted.iter().map(|_| HashMap::new()).collect();
        for record in records {
            for (counted, tally) in self.counted.iter().zip(tallies.iter_mut()) {
                if let Some((key, value)) = key::of(record, counted.metric, &counted.labels) {
                    let entry = tally.entry(key).or_default();
                    entry.value += value;
                    entry.records += 1;
                }
            }
        }
        let Ok(mut families) = self.families.lock() else {
            return;
        };
        for ((counted, tally), family) in self.counted.iter().zip(tallies).zip(families.iter_mut())
        {
            for (key, tally) in tally {
                family.add(key, tally, &counted.labels, self.max_series);
            }
        }
    }

    /// Every family that is on, its series in no particular order.
    pub fn snapshot(&self) -> Vec<FamilySnapshot> {
        let Ok(families) = self.families.lock() else {
            return Vec::new();
        };
        self.counted
            .iter()
            .zip(families.iter())
            .map(|(counted, family)| FamilySnapshot {
                metric: counted.metric,
                labels: counted.labels.clone(),
                series: family
                    .series
                    .iter()
                    .map(|(key, value)| (key.clone(), *value))
                    .collect(),
                folded: family.folded,
            })
            .collect()
    }
}

impl Family {
    fn add(&mut self, key: Key<'_>, tally: Tally, labels: &[ContextLabel], max_series: usize) {
        let owned = key.into_owned();
        if let Some(total) = self.series.get_mut(&owned) {
            *total += tally.value;
            return;
        }
        // Without context labels a family's series are few by construction; the cap is for
        // the labels that name who talked.
        if labels.is_empty() || self.series.len() < max_series {
            self.series.insert(owned, tally.value);
            return;
        }
        self.folded += tally.records;
        *self.series.entry(owned.folded(labels)).or_default() += tally.value;
    }
}

#[cfg(test)]
mod tests;
