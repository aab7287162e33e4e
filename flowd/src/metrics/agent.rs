//! The agent's own bookkeeping: records stored, losses by cause, kernel and agent counters,
//! map use, subscribers, the history's size and health.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::DescriptorEncoder;

use super::{
    encode::{counter, gauge, labelled_counters},
    Sources,
};

pub fn encode(sources: &Sources, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let t = &sources.telemetry;
    let store = &sources.store;
    counter(
        encoder,
        "flowd_flows_recorded",
        "Flow records written to the node-local history",
        t.flows_recorded.load(Relaxed),
    )?;
    let lost = t.lost(true);
    labelled_counters(
        encoder,
        "flowd_lost_records",
        "Records or events lost, by cause",
        "cause",
        lost.iter().map(|(k, v)| (k.as_str(), *v)),
    )?;
    let counters = t.counters();
    labelled_counters(
        encoder,
        "flowd_events",
        "Kernel counters summed over CPUs and agent counters, by name; \
         kubernetes_<kind>_synced is 0 while that watch is failing (metadata stale)",
        "counter",
        counters.iter().map(|(k, v)| (k.as_str(), *v)),
    )?;
    gauge(
        encoder,
        "flowd_flow_map_entries",
        "Connections in the kernel flow map",
        t.active_flows.load(Relaxed),
    )?;
    gauge(
        encoder,
        "flowd_flow_map_capacity",
        "Capacity of the kernel flow map",
        t.flow_map_capacity,
    )?;
    gauge(
        encoder,
        "flowd_subscribers",
        "Open GetFlows streams",
        t.subscribers.load(Relaxed),
    )?;
    gauge(
        encoder,
        "flowd_store_records",
        "Records in the node-local history",
        store.len(),
    )?;
    gauge(
        encoder,
        "flowd_store_write_failing",
        "1 while the node-local history cannot be written (disk full, I/O error); records \
         wait in memory meanwhile",
        i64::from(store.write_failure().is_some()),
    )?;
    gauge(
        encoder,
        "flowd_store_held_records",
        "Records waiting in memory for the history to be writable again",
        t.history_held.load(Relaxed),
    )?;
    gauge(
        encoder,
        "flowd_store_bytes",
        "Bytes of records in the node-local history",
        store.record_bytes(),
    )
}
