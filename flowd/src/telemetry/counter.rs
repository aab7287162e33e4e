//! The counters GetStatus and `/metrics` report, each named in one place.

/// A counter by what it counts. Its name (`name`) is the key of GetStatus's `counters` and the
/// `counter` label of `flowd_counter_total`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// A per-CPU kernel counter summed over CPUs: an index into flowd-common's `COUNTER_NAMES`.
    Kernel(u32),
    /// Ring-buffer events of one kind the agent read.
    Event(EventKind),
    /// Host-wide kernel drops with this reason, as the kernel names it (`NETFILTER_DROP`).
    HostDrops(String),
    /// Whether the Kubernetes watch of this kind (`Pod`, `ReplicaSet`...) has listed
    /// everything: 1, or 0 while it retries.
    KubernetesSynced(&'static str),
    /// Kubernetes watch failures, every kind together.
    KubernetesWatchErrors,
    /// 1 when the history file was found damaged at start and moved aside (the log names it).
    HistoryMovedAside,
    /// Times the interfaces were listed again because link notifications were lost (an
    /// rtnetlink overrun) or their stream ended.
    InterfaceResyncs,
    /// Failed writes to the export file; each is retried from the store, so none loses a record.
    ExportFileWriteErrors,
    /// One exporter's delivery (`export_<exporter>_<count>`): records sent, refused, skipped;
    /// attempts failed and retried; lag as it stands.
    Export(Exporter, ExportCount),
}

/// A system records are exported to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exporter {
    Otlp,
    Kafka,
}

impl Exporter {
    pub fn name(self) -> &'static str {
        match self {
            Exporter::Otlp => "otlp",
            Exporter::Kafka => "kafka",
        }
    }
}

/// What an exporter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExportCount {
    /// Records the receiving end acknowledged.
    Sent,
    /// Records it acknowledged but refused, or refused for good: not exported.
    Rejected,
    /// Records retention removed before the exporter reached them.
    Skipped,
    /// Batches whose delivery failed (each is retried).
    Failed,
    /// Retries after a failure.
    Retried,
    /// Records stored and not yet delivered (a gauge).
    LagRecords,
    /// Age of the oldest record not yet delivered, in seconds (a gauge).
    LagSeconds,
}

impl ExportCount {
    fn as_str(self) -> &'static str {
        match self {
            ExportCount::Sent => "sent",
            ExportCount::Rejected => "rejected",
            ExportCount::Skipped => "skipped",
            ExportCount::Failed => "failed",
            ExportCount::Retried => "retried",
            ExportCount::LagRecords => "lag_records",
            ExportCount::LagSeconds => "lag_seconds",
        }
    }
}

/// Events the kernel programs put on the ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    MapFull,
    Malformed,
    /// A new connection reused an ended connection's tuple.
    Restart,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::MapFull => "map_full",
            EventKind::Malformed => "malformed",
            EventKind::Restart => "flow_restart",
        }
    }
}

impl Counter {
    /// The kernel's ring-buffer-full counter: records it could not hand over.
    pub const RING_BUFFER_FULL: Counter = Counter::Kernel(flowd_common::COUNTER_RINGBUF_FULL);

    pub fn name(&self) -> String {
        match self {
            Counter::Kernel(index) => flowd_common::COUNTER_NAMES
                .get(*index as usize)
                .map_or_else(
                    || format!("kernel_counter_{index}"),
                    |name| (*name).to_owned(),
                ),
            Counter::Event(kind) => format!("events_{}", kind.as_str()),
            Counter::HostDrops(reason) => format!("host_drops_{}", reason.to_lowercase()),
            Counter::KubernetesSynced(kind) => format!("kubernetes_{}_synced", kind.to_lowercase()),
            Counter::KubernetesWatchErrors => "kubernetes_watch_errors".to_owned(),
            Counter::HistoryMovedAside => "history_moved_aside".to_owned(),
            Counter::ExportFileWriteErrors => "export_file_write_errors".to_owned(),
            Counter::InterfaceResyncs => "interface_resyncs".to_owned(),
            Counter::Export(exporter, count) => {
                format!("export_{}_{}", exporter.name(), count.as_str())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_ones_status_has_always_shown() {
        assert_eq!(Counter::RING_BUFFER_FULL.name(), "ring_buffer_full");
        assert_eq!(Counter::Event(EventKind::MapFull).name(), "events_map_full");
        assert_eq!(
            Counter::HostDrops("NETFILTER_DROP".into()).name(),
            "host_drops_netfilter_drop"
        );
        assert_eq!(
            Counter::KubernetesSynced("ReplicaSet").name(),
            "kubernetes_replicaset_synced"
        );
    }
}
