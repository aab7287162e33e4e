//! A record's series in one family: the fixed labels that family always has, and the context
//! labels the settings turned on. Borrowed from the batch while it is tallied, owned once it
//! joins the totals.

use std::borrow::Cow;

use flowd_policy::PolicyRef;

use super::settings::{ContextLabel, FlowMetric};
use crate::model::{EndpointKind, EndpointMeta, FlowRecord, Outcome, ReportReason, Verdict};

/// What a folded series' context labels read once a family is at its cap.
pub const FOLDED: &str = "_other";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Base<'a> {
    Traffic {
        verdict: Verdict,
        protocol: u8,
        /// The hook where the connection's first packets were seen.
        direction: Direction,
    },
    Drop {
        reason: Cow<'a, str>,
    },
    Denial {
        /// `Denied`, or `NotEnforced` where a policy denies traffic that got through.
        verdict: Verdict,
        policy: Cow<'a, PolicyRef>,
        rule: Option<i32>,
    },
    Outcome {
        outcome: Outcome,
        protocol: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress,
    Egress,
    Unknown,
}

/// A series: its family's fixed labels, then a value per context label (empty where off).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key<'a> {
    pub base: Base<'a>,
    pub context: [LabelValue<'a>; 4],
}

/// Finds an owned series by a key still borrowing from the batch: hashes as the key does, so
/// equal keys hash equal.
#[derive(Hash)]
pub struct Lookup<'k, 'a>(pub &'k Key<'a>);

impl hashbrown::Equivalent<Key<'static>> for Lookup<'_, '_> {
    fn equivalent(&self, owned: &Key<'static>) -> bool {
        self.0 == owned
    }
}

/// A context label's value. Most are empty (labels off, endpoints without a namespace), and
/// comparing two empty `str`s still calls `memcmp` with their pointers, which for an empty
/// `String` dangle: glibc's AVX-512 `memcmp` then takes a masked load that faults and is
/// suppressed, a microcode assist costing microseconds. Equal empty values never reach it.
#[derive(Clone, Debug, Default, Eq, Hash)]
pub struct LabelValue<'a>(pub Cow<'a, str>);

impl PartialEq for LabelValue<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && (self.0.is_empty() || self.0 == other.0)
    }
}

impl PartialEq<&str> for LabelValue<'_> {
    fn eq(&self, other: &&str) -> bool {
        self == &LabelValue(Cow::Borrowed(other))
    }
}

impl std::ops::Deref for LabelValue<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LabelValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Key<'_> {
    pub fn into_owned(self) -> Key<'static> {
        let base = match self.base {
            Base::Traffic {
                verdict,
                protocol,
                direction,
            } => Base::Traffic {
                verdict,
                protocol,
                direction,
            },
            Base::Drop { reason } => Base::Drop {
                reason: Cow::Owned(reason.into_owned()),
            },
            Base::Denial {
                verdict,
                policy,
                rule,
            } => Base::Denial {
                verdict,
                policy: Cow::Owned(policy.into_owned()),
                rule,
            },
            Base::Outcome { outcome, protocol } => Base::Outcome { outcome, protocol },
        };
        Key {
            base,
            context: self
                .context
                .map(|value| LabelValue(Cow::Owned(value.0.into_owned()))),
        }
    }

    /// The same series with every context label that is on reading [`FOLDED`].
    pub fn folded(self, labels: &[ContextLabel]) -> Key<'static> {
        let mut key = self.into_owned();
        for label in labels {
            key.context[label.index()] = LabelValue(Cow::Borrowed(FOLDED));
        }
        key
    }
}

/// The series `record` adds to in `metric`'s family and by how much; `None` when it adds
/// nothing there (no drops, no denial, a connection not yet ended).
pub fn of<'a>(
    record: &'a FlowRecord,
    metric: FlowMetric,
    labels: &[ContextLabel],
) -> Option<(Key<'a>, u64)> {
    let (base, value) = match metric {
        FlowMetric::Flows | FlowMetric::Connections | FlowMetric::Bytes | FlowMetric::Packets => {
            (traffic(record), traffic_value(record, metric))
        }
        FlowMetric::Drops => {
            let dropped = record.request.dropped_packets + record.reply.dropped_packets;
            if dropped == 0 {
                return None;
            }
            let reason = record.drop_reason.as_deref().unwrap_or("UNKNOWN");
            (
                Base::Drop {
                    reason: Cow::Borrowed(reason),
                },
                dropped,
            )
        }
        FlowMetric::Denials => {
            if !matches!(record.verdict, Verdict::Denied | Verdict::NotEnforced) {
                return None;
            }
            let side = record.policy.as_deref()?.deciding();
            let policy = side.policy.as_ref()?;
            (
                Base::Denial {
                    verdict: record.verdict,
                    policy: Cow::Borrowed(policy),
                    rule: side.rule,
                },
                1,
            )
        }
        FlowMetric::Outcomes => (
            Base::Outcome {
                outcome: record.outcome,
                protocol: record.protocol,
            },
            1,
        ),
    };
    if value == 0 {
        return None;
    }
    Some((
        Key {
            base,
            context: context(record, labels),
        },
        value,
    ))
}

/// The series `record` adds to in every traffic family (flows, connections, bytes, packets)
/// with these context labels: one key for all of them.
pub fn traffic_key<'a>(record: &'a FlowRecord, labels: &[ContextLabel]) -> Key<'a> {
    Key {
        base: traffic(record),
        context: context(record, labels),
    }
}

/// What `record` adds to a traffic family; 0 for nothing.
pub fn traffic_value(record: &FlowRecord, metric: FlowMetric) -> u64 {
    match metric {
        FlowMetric::Flows => 1,
        // Reports of a live connection (active timeout) come again; its last report counts it.
        FlowMetric::Connections if record.reason == ReportReason::ActiveTimeout => 0,
        FlowMetric::Connections => record.connections,
        FlowMetric::Bytes => record.request.bytes + record.reply.bytes,
        FlowMetric::Packets => record.request.packets + record.reply.packets,
        FlowMetric::Drops | FlowMetric::Denials | FlowMetric::Outcomes => 0,
    }
}

fn traffic(record: &FlowRecord) -> Base<'static> {
    Base::Traffic {
        verdict: record.verdict,
        protocol: record.protocol,
        direction: match record.request.direction {
            Some(crate::model::TrafficDirection::Ingress) => Direction::Ingress,
            Some(crate::model::TrafficDirection::Egress) => Direction::Egress,
            None => Direction::Unknown,
        },
    }
}

fn context<'a>(record: &'a FlowRecord, labels: &[ContextLabel]) -> [LabelValue<'a>; 4] {
    let mut context: [LabelValue<'a>; 4] = Default::default();
    for label in labels {
        let meta = match label {
            ContextLabel::SourceNamespace | ContextLabel::SourceWorkload => &record.source_meta,
            ContextLabel::DestinationNamespace | ContextLabel::DestinationWorkload => {
                &record.destination_meta
            }
        };
        let value = match label {
            ContextLabel::SourceNamespace | ContextLabel::DestinationNamespace => {
                meta.as_deref().map_or("", |m| m.namespace.as_str())
            }
            ContextLabel::SourceWorkload | ContextLabel::DestinationWorkload => {
                workload(meta.as_deref())
            }
        };
        context[label.index()] = LabelValue(Cow::Borrowed(value));
    }
    context
}

/// A pod's workload by name; anything else by its kind (`world`, `node`...), so a label never
/// takes one value per address.
fn workload(meta: Option<&EndpointMeta>) -> &str {
    let Some(meta) = meta else {
        return "unknown";
    };
    if let Some(workload) = &meta.workload {
        return &workload.name;
    }
    match meta.kind {
        EndpointKind::Pod => meta.name.as_str(),
        EndpointKind::Host => "host",
        EndpointKind::Node => "node",
        EndpointKind::Service => meta.name.as_str(),
        EndpointKind::WorldPrivate => "world-private",
        EndpointKind::WorldPublic => "world",
        // Sets are few and named by the cluster's own objects: bounded like workloads.
        EndpointKind::NetworkSet => meta.name.as_str(),
    }
}
