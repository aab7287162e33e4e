//! The flow metrics stage's cost per record, beside what the store stage after it already costs
//! each record (encoding and a durable append): the ratio is what metrics add to a record's way.

use flowd::{
    flow_metrics::{Counting, FlowMetric, FlowMetricSettings, FlowMetrics},
    model::{EndpointKind, EndpointMeta, PolicyVerdict, SideVerdict, Workload},
    pipeline::Pipeline,
    policy::{PolicyKind, PolicyRef, Ruling},
};
use tokio::sync::mpsc;

use super::*;

const TOTAL: usize = 200_000;
const BATCH: usize = 1_000;

fn pod(namespace: usize, workload: usize) -> Arc<EndpointMeta> {
    let mut meta = EndpointMeta::world(IpAddr::from([198, 18, 1, (workload % 250) as u8]));
    meta.kind = EndpointKind::Pod;
    meta.namespace = format!("team-{namespace}");
    meta.name = format!("app-{workload}-7d4f9-x2x");
    meta.workload = Some(Workload::new("Deployment", &format!("app-{workload}")));
    Arc::new(meta)
}

fn denied() -> Arc<PolicyVerdict> {
    let side = |allowed: bool| SideVerdict {
        allowed,
        policy: (!allowed).then(|| PolicyRef {
            kind: PolicyKind::CalicoNetworkPolicy,
            tier: "default".into(),
            namespace: Some("team-1".into()),
            name: "default-deny".into(),
        }),
        rule: (!allowed).then_some(-1),
        rule_name: None,
        ruling: if allowed {
            Ruling::NoPolicy
        } else {
            Ruling::EndOfTierDeny
        },
        trace: Vec::new(),
    };
    Arc::new(PolicyVerdict {
        egress: side(true),
        ingress: side(false),
    })
}

/// Enriched records as a busy node makes them: 100 workloads in 10 namespaces, 1% denied by a
/// policy, 1% dropped by the kernel.
fn enriched_records() -> Vec<FlowRecord> {
    let pods: Vec<Arc<EndpointMeta>> = (0..100).map(|w| pod(w % 10, w)).collect();
    let denial = denied();
    (0..TOTAL)
        .map(|i| {
            let mut record = FlowRecord::sample((i % 60_000) as u16);
            record.source_meta = Some(pods[i % pods.len()].clone());
            record.destination_meta = Some(pods[(i / 7) % pods.len()].clone());
            if i % 100 == 0 {
                record.verdict = Verdict::Denied;
                record.policy = Some(denial.clone());
            } else if i % 100 == 50 {
                record.verdict = Verdict::Dropped;
                record.drop_reason = Some("NETFILTER_DROP".into());
                record.request.dropped_packets = 1;
            }
            record
        })
        .collect()
}

fn flow_metrics_with(labels: &[&str]) -> anyhow::Result<FlowMetrics> {
    Ok(FlowMetrics::new(&FlowMetricSettings {
        metrics: FlowMetric::ALL.to_vec(),
        labels: labels
            .iter()
            .map(|l| l.parse().map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?,
        max_series: 2_000,
    }))
}

fn metrics_ns_per_record(records: &[FlowRecord], labels: &[&str]) -> anyhow::Result<f64> {
    let metrics = flow_metrics_with(labels)?;
    let started = Instant::now();
    for batch in records.chunks(BATCH) {
        metrics.count(batch);
    }
    let elapsed = started.elapsed();
    let counted: u64 = metrics
        .snapshot()
        .iter()
        .filter(|f| f.metric == FlowMetric::Flows)
        .flat_map(|f| f.series.iter().map(|(_, n)| n))
        .sum();
    anyhow::ensure!(
        counted == records.len() as u64,
        "flows counted {counted}, made {}",
        records.len()
    );
    Ok(elapsed.as_nanos() as f64 / records.len() as f64)
}

/// The store stage's work on the same records: the wire form, then durable appends.
fn store_ns_per_record(records: &[FlowRecord]) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = store::open_store(dir.path())?;
    let started = Instant::now();
    for batch in records.chunks(BATCH) {
        store.append(batch.iter().map(wire::to_proto).collect())?;
    }
    Ok(started.elapsed().as_nanos() as f64 / records.len() as f64)
}

/// Records/s from the aggregation stage's output to the history, as the agent wires it: through
/// the counting stage and its extra channel hop when `metrics` is given, straight to the store
/// otherwise.
fn pipeline_rate(
    runtime: &tokio::runtime::Runtime,
    records: &[FlowRecord],
    metrics: Option<FlowMetrics>,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(store::open_store(dir.path())?);
    let batches: Vec<Vec<FlowRecord>> = records.chunks(BATCH).map(<[_]>::to_vec).collect();
    runtime.block_on(async {
        let mut pipeline = Pipeline::new(64);
        let (input, aggregated) = mpsc::channel(64);
        let mut into_store = match metrics {
            Some(metrics) => pipeline.then(
                Counting {
                    metrics: Arc::new(metrics),
                },
                aggregated,
            ),
            None => aggregated,
        };
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut stored = 0usize;
                while let Some(batch) = into_store.recv().await {
                    stored += batch.len();
                    let flows = batch.iter().map(wire::to_proto).collect();
                    store.append(flows)?;
                }
                anyhow::Ok(stored)
            })
        };
        let started = Instant::now();
        for batch in batches {
            input.send(batch).await?;
        }
        drop(input);
        let stored = writer.await??;
        let elapsed = started.elapsed();
        pipeline.join().await?;
        anyhow::ensure!(
            stored == records.len(),
            "stored {stored} of {}",
            records.len()
        );
        Ok(records.len() as f64 / elapsed.as_secs_f64())
    })
}

pub(crate) fn flow_metrics(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let records = enriched_records();
    let store = store_ns_per_record(&records)?;
    let mut rows = Vec::new();
    for (what, labels) in [
        (
            "flow metrics, every family, no context labels (ns/record)",
            &[][..],
        ),
        (
            "flow metrics, every family, chart default bytes=source_namespace,destination_namespace (ns/record)",
            &["bytes=source_namespace,destination_namespace"][..],
        ),
        (
            "flow metrics, every family with source/destination namespace and workload (ns/record)",
            &[
                "flows=source_namespace,source_workload,destination_namespace,destination_workload",
                "connections=source_namespace,source_workload,destination_namespace,destination_workload",
                "bytes=source_namespace,source_workload,destination_namespace,destination_workload",
                "packets=source_namespace,source_workload,destination_namespace,destination_workload",
            ][..],
        ),
    ] {
        let metrics = metrics_ns_per_record(&records, labels)?;
        rows.push(row(
            what,
            format!("{metrics:.0}"),
            format!("{store:.0} (store stage: encode + durable append)"),
            metrics / store,
            "<= 0.10",
        ));
    }
    // Interleaved rounds, medians: the durable appends make single runs vary.
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        without.push(pipeline_rate(runtime, &records, None)?);
        with.push(pipeline_rate(
            runtime,
            &records,
            Some(flow_metrics_with(&[
                "bytes=source_namespace,destination_namespace",
            ])?),
        )?);
    }
    let median = |mut rates: Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (without, with) = (median(without), median(with));
    rows.push(row(
        "records/s from aggregation into the history, with the flow metrics stage (chart default labels; median of 5 interleaved)",
        format!("{with:.0}"),
        format!("{without:.0} (no metrics stage)"),
        with / without,
        ">= 0.95",
    ));
    Ok(rows)
}
