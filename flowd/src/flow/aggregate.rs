//! Aggregation levels: per connection (default, pass-through), source ports folded, or endpoints
//! folded to their workload and destination port. Records of different verdicts or outcomes are
//! never merged: allowed and denied traffic stay apart.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use crate::{
    model::{EndpointMeta, FlowRecord, Outcome, Verdict},
    pipeline::Stage,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// One record per connection, as soon as it is reported.
    Connection,
    /// Connections differing only in the source port are folded, per flush interval.
    SourcePort,
    /// Endpoints folded to their workload (or pod, or address when metadata names none) and
    /// destination port, per flush interval.
    Workload,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    netns_cookie: u64,
    ifindex: u32,
    protocol: u8,
    /// The address, or at workload level the workload when metadata names one.
    source: String,
    destination: String,
    destination_port: u16,
    icmp: (u8, u8),
    verdict: Verdict,
    outcome: Outcome,
}

pub struct Aggregator {
    level: Level,
    pending: HashMap<Key, FlowRecord>,
}

impl Aggregator {
    pub fn new(level: Level) -> Self {
        Self {
            level,
            pending: HashMap::new(),
        }
    }

    /// Takes a record; returns it at once at connection level, otherwise folds it for `drain`.
    pub fn add(&mut self, record: FlowRecord) -> Option<FlowRecord> {
        if self.level == Level::Connection {
            return Some(record);
        }
        let identity = |ip: IpAddr, meta: Option<&EndpointMeta>| match (self.level, meta) {
            (Level::Workload, Some(meta)) => match &meta.workload {
                Some(w) => format!("{}/{}/{}", meta.namespace, w.kind.as_str(), w.name),
                None if !meta.name.is_empty() => format!("{}/{}", meta.namespace, meta.name),
                None => ip.to_string(),
            },
            _ => ip.to_string(),
        };
        let key = Key {
            netns_cookie: record.interface.netns_cookie,
            ifindex: record.interface.index,
            protocol: record.protocol,
            source: identity(record.source.ip, record.source_meta.as_deref()),
            destination: identity(record.destination.ip, record.destination_meta.as_deref()),
            destination_port: record.destination.port,
            icmp: (record.icmp_type, record.icmp_code),
            verdict: record.verdict,
            outcome: record.outcome,
        };
        match self.pending.get_mut(&key) {
            Some(folded) => {
                folded.start = folded.start.min(record.start);
                folded.end = folded.end.max(record.end);
                for (into, from) in [
                    (&mut folded.request, &record.request),
                    (&mut folded.reply, &record.reply),
                ] {
                    into.packets += from.packets;
                    into.bytes += from.bytes;
                    into.tcp_flags.0 |= from.tcp_flags.0;
                    into.dropped_packets += from.dropped_packets;
                    into.dropped_bytes += from.dropped_bytes;
                    into.direction = into.direction.or(from.direction);
                }
                folded.connections += record.connections;
                folded.reason = record.reason;
                if record.drop_reason.is_some() {
                    folded.drop_reason = record.drop_reason;
                    folded.drop_location = record.drop_location;
                }
                folded.initiator_certain &= record.initiator_certain;
            }
            None => {
                let mut first = record;
                first.source.port = 0;
                self.pending.insert(key, first);
            }
        }
        None
    }

    pub fn drain(&mut self) -> Vec<FlowRecord> {
        let mut records: Vec<FlowRecord> = self.pending.drain().map(|(_, r)| r).collect();
        records.sort_by_key(|r| r.end);
        records
    }
}

/// The aggregation stage: at connection level records pass straight through; otherwise they are
/// folded and flushed every `interval`, and once more when the input closes.
/// The aggregation stage: records fold per interval (or pass through at connection level).
pub struct Aggregation {
    aggregator: Aggregator,
    interval: Duration,
}

impl Aggregation {
    pub fn new(level: Level, interval: Duration) -> Self {
        Self {
            aggregator: Aggregator::new(level),
            interval,
        }
    }
}

impl Stage for Aggregation {
    type Input = FlowRecord;
    type Output = FlowRecord;
    const NAME: &'static str = "aggregation";

    fn process(&mut self, batch: Vec<FlowRecord>) -> Vec<FlowRecord> {
        batch
            .into_iter()
            .filter_map(|r| self.aggregator.add(r))
            .collect()
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.interval)
    }

    fn tick(&mut self) -> Vec<FlowRecord> {
        self.aggregator.drain()
    }

    fn finish(&mut self) -> Vec<FlowRecord> {
        self.aggregator.drain()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn record(source_port: u16, destination_port: u16, verdict: Verdict) -> FlowRecord {
        let mut r = FlowRecord::sample(source_port);
        r.destination.port = destination_port;
        r.verdict = verdict;
        r
    }

    #[test]
    fn connection_level_passes_through() {
        let mut a = Aggregator::new(Level::Connection);
        assert!(a.add(record(1, 53, Verdict::Forwarded)).is_some());
        assert!(a.drain().is_empty());
    }

    #[test]
    fn source_ports_fold_but_verdicts_and_destination_ports_do_not() {
        let mut a = Aggregator::new(Level::SourcePort);
        let mut late = record(1001, 53, Verdict::Forwarded);
        late.end = SystemTime::UNIX_EPOCH + Duration::from_secs(50);
        for r in [
            record(1000, 53, Verdict::Forwarded),
            late,
            record(1002, 53, Verdict::Denied),
            record(1003, 80, Verdict::Forwarded),
        ] {
            assert!(a.add(r).is_none());
        }
        let out = a.drain();
        assert_eq!(out.len(), 3);
        let folded = out
            .iter()
            .find(|r| r.connections == 2)
            .expect("the two forwarded DNS connections folded");
        assert_eq!(folded.source.port, 0);
        assert_eq!((folded.request.packets, folded.reply.bytes), (2, 240));
        assert_eq!(folded.end, SystemTime::UNIX_EPOCH + Duration::from_secs(50));
        assert!(out
            .iter()
            .any(|r| r.verdict == Verdict::Denied && r.connections == 1));
        assert!(a.drain().is_empty(), "drained once");
    }
}
