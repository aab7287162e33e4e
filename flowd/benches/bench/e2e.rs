//! End to end: what each collector on the wire costs the traffic it watches, against the same
//! veth with nothing attached, in one interleaved run.
//!
//! Host A (the "node": every collector attaches to its veth0) runs the servers pinned to CPU 1;
//! host B runs the clients pinned to CPU 0. Each round runs every collector once, in turn, so a
//! neighbour's noise falls on all of them alike; the figure is the median of the rounds.

mod collectors;
mod traffic;

use super::*;
use collectors::{Collector, Running};
use traffic::Traffic;

/// What one collector got in one round.
#[derive(Clone, Debug, Default)]
struct Sample {
    tcp_gbps: f64,
    udp_kpps: f64,
    connections_per_s: f64,
    /// Collector process CPU milliseconds per million packets crossing the veth (TCP and UDP
    /// loads).
    cpu_ms_per_m_packets: Option<f64>,
    /// BPF run time per packet of the UDP load, by program name (bpf_stats).
    bpf_ns_per_packet: Vec<(String, f64)>,
    /// Connections the generator made and the collector reported (flowd only).
    connections: Option<(u64, u64)>,
    /// Collector process CPU milliseconds per thousand connections of the connection load.
    cpu_ms_per_k_connections: Option<f64>,
}

fn seconds() -> u64 {
    std::env::var("FLOWD_BENCH_E2E_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

fn rounds() -> usize {
    std::env::var("FLOWD_BENCH_E2E_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// One collector's turn: start it, run the three loads, stop it.
fn measure(
    runtime: &tokio::runtime::Runtime,
    hosts: &TwoHosts,
    collector: Collector,
    traffic: &Traffic,
) -> anyhow::Result<Sample> {
    let running = Running::start(runtime, hosts, collector)
        .with_context(|| format!("starting {}", collector.name()))?;
    let cpu_before = running.cpu_seconds()?;
    let packets_before = traffic::veth_packets(hosts)?;
    let tcp_gbps = traffic.tcp_gbps()?;
    let bpf_before = collectors::bpf_programs()?;
    let packets_udp_before = traffic::veth_packets(hosts)?;
    let udp_kpps = traffic.udp_kpps()?;
    let udp_packets = traffic::veth_packets(hosts)? - packets_udp_before;
    let bpf_after = collectors::bpf_programs()?;
    let packets = traffic::veth_packets(hosts)? - packets_before;
    let cpu = running.cpu_seconds()? - cpu_before;
    let cpu_before_connections = running.cpu_seconds()?;
    let made = traffic.connections()?;
    let cpu_connections = running.cpu_seconds()? - cpu_before_connections;
    let connections = match collector {
        Collector::Flowd => Some((
            made.count,
            running.reported_connections(runtime, made.server_port, made.count)?,
        )),
        _ => None,
    };
    running.stop();
    // Only this collector's own programs (the bench process may still hold others it loaded).
    let own = |name: &str| match collector {
        Collector::Flowd => name.starts_with("flowd_"),
        _ => name == collectors::TRIVIAL_NAME,
    };
    let bpf_ns_per_packet = bpf_after
        .iter()
        .filter(|(name, _)| own(name))
        .filter_map(|(name, (runs, ns))| {
            let (runs_before, ns_before) = bpf_before.get(name).copied().unwrap_or((0, 0));
            (runs > &runs_before).then(|| {
                (
                    name.clone(),
                    (ns - ns_before) as f64 / udp_packets.max(1) as f64,
                )
            })
        })
        .collect();
    Ok(Sample {
        tcp_gbps,
        udp_kpps,
        connections_per_s: made.count as f64 / made.seconds,
        cpu_ms_per_m_packets: collector
            .has_process()
            .then(|| cpu * 1e3 / (packets as f64 / 1e6)),
        bpf_ns_per_packet,
        connections,
        cpu_ms_per_k_connections: collector
            .has_process()
            .then(|| cpu_connections * 1e3 / (made.count.max(1) as f64 / 1e3)),
    })
}

pub(crate) fn end_to_end(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    traffic::check_tools()?;
    let hosts = TwoHosts::create("e2e")?;
    let traffic = Traffic::new(&hosts, seconds());
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)?;
    // `FLOWD_BENCH_E2E_COLLECTORS=flowd,softflowd` narrows the run (the ceiling always runs).
    let chosen = std::env::var("FLOWD_BENCH_E2E_COLLECTORS").ok();
    let mut samples: Vec<(Collector, Vec<Sample>)> = Collector::ALL
        .iter()
        .filter(|c| {
            **c == Collector::Ceiling
                || chosen
                    .as_deref()
                    .is_none_or(|list| list.split(',').any(|n| c.name().starts_with(n.trim())))
        })
        .map(|c| (*c, Vec::new()))
        .collect();
    for round in 0..rounds() {
        for (collector, taken) in &mut samples {
            eprintln!(
                "bench: end to end, round {}, {}",
                round + 1,
                collector.name()
            );
            taken.push(measure(runtime, &hosts, *collector, &traffic)?);
        }
    }
    Ok(rows(&samples))
}

/// A load's row name, its figure in a sample and its target.
type Load = (&'static str, fn(&Sample) -> f64, &'static str);

fn rows(samples: &[(Collector, Vec<Sample>)]) -> Vec<Row> {
    let ceiling = &samples[0].1;
    let mut rows = Vec::new();
    for (collector, taken) in samples {
        let name = collector.name();
        // The ratio of each round to the ceiling of the same round, then the median: a busy
        // neighbour slows a whole round, and this cancels it.
        let compared = |field: fn(&Sample) -> f64| {
            let value = median(taken.iter().map(field).collect());
            let base = median(ceiling.iter().map(field).collect());
            let ratio = median(
                taken
                    .iter()
                    .zip(ceiling)
                    .map(|(s, c)| field(s) / field(c))
                    .collect(),
            );
            (value, base, ratio)
        };
        let loads: [Load; 3] = [
            ("TCP bulk (Gbit/s)", |s| s.tcp_gbps, collector.target_tcp()),
            (
                "UDP 64 B received (kpps)",
                |s| s.udp_kpps,
                collector.target_udp(),
            ),
            ("new TCP connections (per s)", |s| s.connections_per_s, "-"),
        ];
        for (load, field, target) in loads {
            let (value, base, ratio) = compared(field);
            let shown = |v: f64| {
                if v < 100.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.0}")
                }
            };
            rows.push(row(
                &format!("end to end, {name}: {load}"),
                shown(value),
                format!("{} (nothing attached)", shown(base)),
                ratio,
                target,
            ));
        }
        if collector.has_process() {
            let cpu = median(
                taken
                    .iter()
                    .filter_map(|s| s.cpu_ms_per_m_packets)
                    .collect(),
            );
            rows.push(row(
                &format!("end to end, {name}: collector CPU, TCP and UDP loads (ms per M packets)"),
                format!("{cpu:.1}"),
                "-".into(),
                1.0,
                "-",
            ));
            let cpu = median(
                taken
                    .iter()
                    .filter_map(|s| s.cpu_ms_per_k_connections)
                    .collect(),
            );
            rows.push(row(
                &format!(
                    "end to end, {name}: collector CPU, connection load (ms per 1000 connections)"
                ),
                format!("{cpu:.1}"),
                "-".into(),
                1.0,
                "-",
            ));
        }
        if *collector == Collector::Flowd || *collector == Collector::TrivialTc {
            let mut names: Vec<&String> = taken
                .iter()
                .flat_map(|s| s.bpf_ns_per_packet.iter().map(|(n, _)| n))
                .collect();
            names.sort();
            names.dedup();
            let per_program = |name: &str| {
                median(
                    taken
                        .iter()
                        .map(|s| {
                            s.bpf_ns_per_packet
                                .iter()
                                .find(|(n, _)| n == name)
                                .map_or(0.0, |(_, ns)| *ns)
                        })
                        .collect(),
                )
            };
            let total = median(
                taken
                    .iter()
                    .map(|s| s.bpf_ns_per_packet.iter().map(|(_, ns)| ns).sum())
                    .collect(),
            );
            // Programs off the per-packet path (socket hooks) round to nothing here.
            for program in names.iter().filter(|n| per_program(n) >= 0.5) {
                rows.push(row(
                    &format!(
                        "end to end, {name}: {program} under UDP 64 B (bpf_stats ns per packet)"
                    ),
                    format!("{:.1}", per_program(program)),
                    "-".into(),
                    1.0,
                    "-",
                ));
            }
            rows.push(row(
                &format!(
                    "end to end, {name}: every program under UDP 64 B (bpf_stats ns per packet)"
                ),
                format!("{total:.1}"),
                "-".into(),
                1.0,
                if *collector == Collector::Flowd {
                    "<= 150"
                } else {
                    "-"
                },
            ));
        }
        let worst = taken
            .iter()
            .filter_map(|s| s.connections)
            .max_by_key(|(made, reported)| made.saturating_sub(*reported));
        if let Some(worst) = worst {
            rows.push(row(
                &format!("end to end, {name}: connections reported, worst round (of made)"),
                format!("{}", worst.1),
                format!("{} made", worst.0),
                worst.1 as f64 / worst.0.max(1) as f64,
                "1.00",
            ));
        }
    }
    rows
}
