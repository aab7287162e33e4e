//! Policy evaluation, cached and not, and the policy stage per record.

use super::*;

/// Policy evaluations with 1,000 policies and 10,000 pods, and the policy stage's cost per flow.
pub(crate) fn policies() -> anyhow::Result<Vec<Row>> {
    let report = flowd::policy::bench::run(&flowd::policy::bench::BenchConfig::default());
    let mut rows = vec![
        row(
            "policy evaluations, 1000 policies / 10000 pods, cached, keyed endpoints (evals/s)",
            format!("{:.0}", report.cached_keyed_per_sec),
            format!("{:.0} (uncached)", report.uncached_per_sec),
            report.cached_keyed_per_sec / report.uncached_per_sec,
            ">= 1000000",
        ),
        row(
            "policy evaluations, same set, cached, endpoints fingerprinted per call (evals/s)",
            format!("{:.0}", report.cached_per_sec),
            format!("{:.0} (uncached)", report.uncached_per_sec),
            report.cached_per_sec / report.uncached_per_sec,
            "-",
        ),
    ];
    // The agent's policy stage on the seed story's policies and pods, per record, against the
    // enrichment stage's lookups of the same two addresses.
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/seed");
    let attributor = flowd::attribution::Attributor::load(
        &[data.join("policies.yaml")],
        &[data.join("cluster.yaml")],
    );
    let index = flowd::enrich::load(&[data.join("cluster.yaml")]);
    let mut record = FlowRecord::sample(40000);
    record.source.ip = "198.18.0.1".parse()?;
    record.destination.ip = "198.18.0.2".parse()?;
    record.protocol = 6;
    let runs = 200_000u32;
    let started = Instant::now();
    for i in 0..runs {
        record.destination.port = 42000 + (i % 4) as u16;
        attributor.attribute(&mut record);
    }
    let per_flow = started.elapsed().as_nanos() as f64 / f64::from(runs);
    let started = Instant::now();
    let now = SystemTime::now();
    for _ in 0..runs {
        record.source_meta = Some(index.lookup(record.source.ip, now));
        record.destination_meta = Some(index.lookup(record.destination.ip, now));
    }
    let lookup = started.elapsed().as_nanos() as f64 / f64::from(runs);
    rows.push(row(
        "policy stage in the agent, seed policies (ns/flow)",
        format!("{per_flow:.0}"),
        format!("{lookup:.0} (enrichment lookups of the same flow)"),
        per_flow / lookup,
        "-",
    ));
    Ok(rows)
}
