//! What flowd itself costs and how far behind it is: the agent's CPU and memory, each BPF
//! program's run time, the pipeline's queues, each exporter's delivery.

use prometheus_client::encoding::DescriptorEncoder;

use super::{
    encode::{counter, counters, gauge, gauges, Labels},
    Sources,
};
use crate::{
    capture::program_stats,
    telemetry::{Counter, ExportCount, Exporter},
};

/// CPU seconds (user and system) and resident bytes of this process, from procfs.
fn process_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command may hold spaces and parentheses; the fields after its last `)` do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `fields` starts at field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)? as f64;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = u64::from(crate::host::page_size());
    Some((ticks as f64 / per_second, resident_pages * page))
}

fn exporter_labels(exporter: Exporter) -> Labels {
    vec![("exporter", exporter.name().to_owned())]
}

fn exporters(sources: &Sources, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let t = &sources.telemetry;
    let running: Vec<Exporter> = [Exporter::Otlp, Exporter::Kafka]
        .into_iter()
        .filter(|e| sources.exporters.contains(e))
        .collect();
    if running.is_empty() {
        return Ok(());
    }
    let count = |exporter, what| t.counter(&Counter::Export(exporter, what)).unwrap_or(0);
    counters(
        encoder,
        "flowd_export_records",
        "Records an exporter delivered (sent), that the receiving end refused for good \
         (rejected), or that retention removed before the exporter reached them (skipped)",
        running.iter().flat_map(|e| {
            [
                (ExportCount::Sent, "sent"),
                (ExportCount::Rejected, "rejected"),
                (ExportCount::Skipped, "skipped"),
            ]
            .map(|(what, result)| {
                let mut labels = exporter_labels(*e);
                labels.push(("result", result.to_owned()));
                (labels, count(*e, what))
            })
        }),
    )?;
    counters(
        encoder,
        "flowd_export_failures",
        "Batches whose delivery failed; each is retried from the history",
        running
            .iter()
            .map(|e| (exporter_labels(*e), count(*e, ExportCount::Failed))),
    )?;
    counters(
        encoder,
        "flowd_export_retries",
        "Delivery retries after a failure",
        running
            .iter()
            .map(|e| (exporter_labels(*e), count(*e, ExportCount::Retried))),
    )?;
    gauges(
        encoder,
        "flowd_export_lag_records",
        "Records in the history the exporter has not delivered yet",
        running
            .iter()
            .map(|e| (exporter_labels(*e), count(*e, ExportCount::LagRecords))),
    )?;
    gauges(
        encoder,
        "flowd_export_lag_seconds",
        "Age of the oldest record the exporter has not delivered yet",
        running
            .iter()
            .map(|e| (exporter_labels(*e), count(*e, ExportCount::LagSeconds))),
    )
}

pub fn encode(sources: &Sources, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    if let Some((cpu_seconds, resident_bytes)) = process_usage() {
        counter(
            encoder,
            "flowd_agent_cpu_seconds",
            "CPU time the agent process used, user and system",
            cpu_seconds,
        )?;
        gauge(
            encoder,
            "flowd_agent_resident_memory_bytes",
            "Resident memory of the agent process",
            resident_bytes,
        )?;
    }
    if !sources.programs.is_empty() {
        gauge(
            encoder,
            "flowd_bpf_stats_enabled",
            "1 while sysctl kernel.bpf_stats_enabled=1; the kernel also counts while any \
             process holds BPF_ENABLE_STATS (bpftool prog profile), which the sysctl does not show",
            i64::from(program_stats::stats_enabled()),
        )?;
        // Always served: the kernel's counters only advance while stats are on, by the sysctl
        // or by a process holding BPF_ENABLE_STATS, and the sysctl cannot tell the second.
        let stats = program_stats::run_stats(&sources.programs);
        let program = |name: &str| vec![("program", name.to_owned())];
        counters(
            encoder,
            "flowd_bpf_program_runs",
            "Runs of each flowd BPF program, counted by the kernel while BPF stats are on",
            stats.iter().map(|s| (program(&s.name), s.runs)),
        )?;
        counters(
            encoder,
            "flowd_bpf_program_run_seconds",
            "Time each flowd BPF program ran, counted by the kernel while BPF stats are on; \
             over runs, the cost of one run",
            stats
                .iter()
                .map(|s| (program(&s.name), s.run_time_ns as f64 / 1e9)),
        )?;
    }
    if let Some(queues) = &sources.queues {
        gauges(
            encoder,
            "flowd_pipeline_queued_batches",
            "Batches waiting in the channel after each pipeline stage (capacity: \
             pipelineBuffer); a full one is where the pipeline lags",
            queues
                .queued()
                .into_iter()
                .map(|(from, n)| (vec![("from", from.to_owned())], n)),
        )?;
    }
    exporters(sources, encoder)
}
