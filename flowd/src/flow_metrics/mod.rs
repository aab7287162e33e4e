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

pub use key::{Base, Direction, Key, LabelValue, FOLDED};
pub use settings::{ContextLabel, FlowMetric, FlowMetricSettings, MetricLabels};
pub use stage::Counting;

use crate::model::FlowRecord;

/// Hashed once per record and family: foldhash, several times cheaper than SipHash on these
/// short keys, and seeded per process, since label values (pod names) come from the cluster.
type Series<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One family's series so far. hashbrown's map, as it finds an owned key by a borrowed one
/// ([`hashbrown::Equivalent`]): a series already there costs no copy of its label values.
#[derive(Debug, Default)]
struct Family {
    series: hashbrown::HashMap<Key<'static>, u64, foldhash::fast::RandomState>,
    /// Records whose series the cap folded into `_other`.
    folded: u64,
}

/// A batch's sum for one series, and how many records made it.
#[derive(Clone, Copy, Debug, Default)]
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

/// Families a record's one key serves: the traffic families (flows, connections, bytes,
/// packets) that carry the same context labels share it, so a record is hashed once for them;
/// every other family is a group of its own.
#[derive(Debug)]
struct Group {
    labels: Vec<ContextLabel>,
    /// Each member's family (its index in `counted`) and metric; at most [`GROUP_MAX`].
    members: Vec<(usize, FlowMetric)>,
    traffic: bool,
}

/// The traffic families, the most a group holds.
const GROUP_MAX: usize = 4;

fn is_traffic(metric: FlowMetric) -> bool {
    matches!(
        metric,
        FlowMetric::Flows | FlowMetric::Connections | FlowMetric::Bytes | FlowMetric::Packets
    )
}

fn groups(counted: &[Counted]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (index, family) in counted.iter().enumerate() {
        let traffic = is_traffic(family.metric);
        let shared = groups
            .iter_mut()
            .find(|g| traffic && g.traffic && g.labels == family.labels);
        match shared {
            Some(group) => group.members.push((index, family.metric)),
            None => groups.push(Group {
                labels: family.labels.clone(),
                members: vec![(index, family.metric)],
                traffic,
            }),
        }
    }
    groups
}

/// The totals, shared by the stage that counts and the scrape that reads.
#[derive(Debug)]
pub struct FlowMetrics {
    counted: Vec<Counted>,
    groups: Vec<Group>,
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
            groups: groups(&counted),
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
        let mut tallies: Vec<Series<Key<'_>, [Tally; GROUP_MAX]>> =
            self.groups.iter().map(|_| Series::default()).collect();
        for record in records {
            for (group, tally) in self.groups.iter().zip(tallies.iter_mut()) {
                if group.traffic {
                    let mut slots = [0u64; GROUP_MAX];
                    for (slot, (_, metric)) in slots.iter_mut().zip(&group.members) {
                        *slot = key::traffic_value(record, *metric);
                    }
                    if slots.iter().all(|v| *v == 0) {
                        continue;
                    }
                    let entry = tally
                        .entry(key::traffic_key(record, &group.labels))
                        .or_default();
                    for (total, value) in entry.iter_mut().zip(slots) {
                        if value > 0 {
                            total.value += value;
                            total.records += 1;
                        }
                    }
                } else if let Some((key, value)) =
                    key::of(record, group.members[0].1, &group.labels)
                {
                    let entry = &mut tally.entry(key).or_default()[0];
                    entry.value += value;
                    entry.records += 1;
                }
            }
        }
        let Ok(mut families) = self.families.lock() else {
            return;
        };
        for (group, tally) in self.groups.iter().zip(tallies) {
            for (key, slots) in tally {
                for ((index, _), slot) in group.members.iter().zip(slots) {
                    if slot.records > 0 {
                        if let Some(family) = families.get_mut(*index) {
                            family.add(key.clone(), slot, &group.labels, self.max_series);
                        }
                    }
                }
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
        if let Some(total) = self.series.get_mut(&key::Lookup(&key)) {
            *total += tally.value;
            return;
        }
        let owned = key.into_owned();
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
