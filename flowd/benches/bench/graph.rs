//! The workload graph: GetGraph's aggregation over 1M stored records (end to end from the
//! history, and the fold alone), each against reading the same records without folding; and
//! the page's render time for 1,000 workloads and 10,000 edges in headless Chromium, against
//! the same page over an empty history.

use flowd::graph::{self, GraphBuilder};
use flowd::query::FlowMatcher;

use super::*;
use crate::store::open_store;

const WORKLOADS: usize = 1_000;
const NAMESPACES: usize = 20;
const EDGES: usize = 10_000;

fn endpoint(workload: usize, pod: usize, port: u32) -> pb::Endpoint {
    let namespace = format!("ns-{}", workload % NAMESPACES);
    let name = format!("app-{workload}");
    pb::Endpoint {
        ip: format!("10.{}.{}.{}", workload / 250, workload % 250, pod % 250),
        port,
        kind: pb::EndpointKind::Pod as i32,
        namespace: namespace.clone(),
        name: format!("{name}-{pod}"),
        labels: [("app".to_owned(), name.clone())].into(),
        workload: Some(pb::Workload {
            kind: "Deployment".into(),
            name,
        }),
        services: vec![format!("{namespace}/svc-{workload}")],
        node: format!("node-{}", workload % 50),
    }
}

/// Record `i` of a cluster of WORKLOADS workloads talking over EDGES distinct edges: ports,
/// verdicts and policy decisions vary as they do in a real history.
pub(crate) fn record(i: usize, end: SystemTime) -> pb::Flow {
    let edge = i % EDGES;
    let source = edge % WORKLOADS;
    let destination = (source * 7 + edge / WORKLOADS + 1) % WORKLOADS;
    let denied = edge.is_multiple_of(50);
    let decision = |allowed: bool| pb::PolicyDecision {
        allowed,
        policy: Some(pb::PolicyRef {
            kind: "NetworkPolicy".into(),
            tier: "default".into(),
            namespace: format!("ns-{}", destination % NAMESPACES),
            name: format!("policy-{destination}"),
            rule_index: if allowed { 0 } else { -1 },
            rule_name: String::new(),
        }),
        action: if allowed { "Allow" } else { "EndOfTierDeny" }.into(),
        trace: Vec::new(),
    };
    let end_ns = wire::timestamp(end);
    pb::Flow {
        cursor: 0,
        start_time: Some(end_ns),
        end_time: Some(end_ns),
        node: format!("node-{}", source % 50),
        ip_version: pb::IpVersion::Ipv4 as i32,
        protocol: pb::Protocol::Tcp as i32,
        // Five pods per workload, as a deployment of a 5,000-pod cluster has.
        source: Some(endpoint(source, i % 5, 40_000 + (i % 20_000) as u32)),
        destination: Some(endpoint(destination, (i / 3) % 5, 8000 + (edge % 5) as u32)),
        request: Some(pb::TrafficCounters {
            packets: 10,
            bytes: 1_500,
            ..Default::default()
        }),
        reply: Some(pb::TrafficCounters {
            packets: 8,
            bytes: 9_000,
            ..Default::default()
        }),
        verdict: if denied {
            pb::Verdict::Denied
        } else {
            pb::Verdict::Forwarded
        } as i32,
        outcome: if denied {
            pb::Outcome::Unanswered
        } else {
            pb::Outcome::Closed
        } as i32,
        connections: 1,
        ingress: Some(decision(!denied)),
        egress: Some(pb::PolicyDecision {
            allowed: true,
            action: "NoPolicy".into(),
            ..Default::default()
        }),
        drop_reason: if denied {
            "NETFILTER_DROP".into()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

/// Stores `count` records, oldest first, their end times spread evenly over the `span` before
/// `end`, in batches as the store stage writes them. With `periods`, each batch is also folded
/// and every minute that has settled is offered as a summary, as the summary stage does.
fn fill(
    store: &FlowStore,
    count: usize,
    end: SystemTime,
    span: Duration,
    mut periods: Option<&mut graph::summary::Periods>,
) -> anyhow::Result<()> {
    let settle = flowd::agent::summary_settle(&flowd::config::Config::default());
    let step = span / count as u32;
    let mut batch = Vec::with_capacity(5_000);
    let mut offer = |batch: Vec<pb::Flow>| -> anyhow::Result<()> {
        let stored = store.append(batch)?;
        if let Some(periods) = periods.as_deref_mut() {
            stored.iter().for_each(|flow| periods.add(flow));
            // The stage's clock: the history is filled as if in real time, so a minute has
            // settled once the newest record is `settle` past it.
            let newest = stored
                .iter()
                .filter_map(|flow| flow.end_time.as_ref())
                .map(flowd::store::time_ns)
                .max()
                .unwrap_or(0);
            let settled = newest.saturating_sub(settle.as_nanos() as u64);
            graph::summary::store_closed(store, periods.take_closed(settled), settled);
        }
        Ok(())
    };
    for i in 0..count {
        batch.push(record(i, end - span + step * i as u32));
        if batch.len() == 5_000 {
            offer(std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        offer(batch)?;
    }
    Ok(())
}

const HOUR: Duration = Duration::from_secs(3600);

fn ns(t: SystemTime) -> anyhow::Result<u64> {
    Ok(t.duration_since(SystemTime::UNIX_EPOCH)?.as_nanos() as u64)
}

/// GetGraph over the last hour of a history of 1M records, end to end, against reading
/// (decoding) them all; what keeping summaries costs the history's writes; and the fold alone
/// over decoded records, against visiting them.
pub(crate) fn aggregation() -> anyhow::Result<Vec<Row>> {
    const STORED: usize = 1_000_000;
    let end = SystemTime::now();
    let (plain_dir, dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let plain = open_store(plain_dir.path())?;
    let started = Instant::now();
    fill(&plain, STORED, end, HOUR, None)?;
    let plain_ingest = STORED as f64 / started.elapsed().as_secs_f64();
    let store = open_store(dir.path())?;
    let started = Instant::now();
    fill(
        &store,
        STORED,
        end,
        HOUR,
        Some(&mut graph::summary::Periods::default()),
    )?;
    let summarised_ingest = STORED as f64 / started.elapsed().as_secs_f64();
    let (since, until) = (ns(end - HOUR)?, ns(end)?);
    let summaries = store.summarised_periods()?;
    // Every whole minute but the ones still settling at the end has one, and the ten minutes
    // made of them.
    anyhow::ensure!(
        summaries.len() >= 57 + 5,
        "the summarised history holds {} summaries of its 60 minutes",
        summaries.len()
    );
    let started = Instant::now();
    let mut read = 0usize;
    store.visit(
        Range::EndTime {
            since_ns: since,
            until_ns: until,
        },
        |flow| read += usize::from(flow.source.is_some()),
    )?;
    let read_rate = read as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let built = graph::from_history(&store, &FlowMatcher::all(), since, until, EDGES, &[])?;
    let graph_rate = built.flows as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        built.flows == STORED as u64 && built.edges_total == EDGES as u64,
        "the graph folded {} records into {} edges",
        built.flows,
        built.edges_total
    );
    let started = Instant::now();
    let raw = graph::from_history(&plain, &FlowMatcher::all(), since, until, EDGES, &[])?;
    let raw_rate = raw.flows as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        raw.edges == built.edges && raw.nodes == built.nodes,
        "the graph from summaries differs from the one from records"
    );

    const IN_MEMORY: usize = 200_000;
    const ROUNDS: usize = 5;
    let flows: Vec<pb::Flow> = (0..IN_MEMORY).map(|i| record(i, end)).collect();
    let started = Instant::now();
    let mut bytes = 0u64;
    for _ in 0..ROUNDS {
        for flow in &flows {
            bytes += flow.request.as_ref().map_or(0, |r| r.bytes);
        }
    }
    std::hint::black_box(bytes);
    let visit_rate = (IN_MEMORY * ROUNDS) as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut builder = GraphBuilder::new();
    for _ in 0..ROUNDS {
        for flow in &flows {
            builder.add(flow);
        }
    }
    let folded = builder.finish(EDGES, &[]);
    let fold_rate = (IN_MEMORY * ROUNDS) as f64 / started.elapsed().as_secs_f64();
    std::hint::black_box(folded);
    Ok(vec![
        row(
            "GetGraph over the last hour, 1M stored records, 1,000 workloads, 10,000 edges (records/s, end to end)",
            format!("{graph_rate:.0}"),
            format!("{read_rate:.0} (reading the same records)"),
            graph_rate / read_rate,
            ">= 2000000",
        ),
        row(
            "same GetGraph, history without summaries (records/s)",
            format!("{raw_rate:.0}"),
            format!("{read_rate:.0} (reading the same records)"),
            raw_rate / read_rate,
            "-",
        ),
        row(
            "history writes while keeping graph summaries (records/s)",
            format!("{summarised_ingest:.0}"),
            format!("{plain_ingest:.0} (without them)"),
            summarised_ingest / plain_ingest,
            "-",
        ),
        row(
            "graph fold alone, decoded records (records/s)",
            format!("{fold_rate:.0}"),
            format!("{visit_rate:.0} (visiting them)"),
            fold_rate / visit_rate,
            "-",
        ),
    ])
}

/// An agent's UI (no kernel) over `store`, with room for every edge.
async fn serve_ui(store: FlowStore, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let hub = Hub::new(Arc::new(store), 1024);
    let telemetry = Arc::new(Telemetry::new("bench", 1));
    let api = FlowApi::new(hub, telemetry).with_limits(api::ApiLimits {
        graph_max_edges: EDGES,
        ..api::ApiLimits::default()
    });
    let listeners = Listeners::bind_tcp(SocketAddr::from(([127, 0, 0, 1], 0)), None).await?;
    let addr = listeners.tcp_addr().context("bound")?;
    tokio::spawn(flowd::ui::serve(
        flowd::ui::router(Arc::new(api)),
        listeners,
        shutdown,
    ));
    Ok(addr)
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Median seconds from navigation to the drawn page over `rounds` loads, the edges drawn; with
/// `expanded`, also the median seconds to draw every namespace opened ("expand all").
fn render_seconds(
    browser: &mut flowd::browser::Browser,
    url: &str,
    rounds: usize,
) -> (f64, u64, f64, u64) {
    let (mut loads, mut expansions) = (Vec::new(), Vec::new());
    let (mut drawn, mut expanded) = (0, 0);
    for _ in 0..rounds {
        browser.navigate("about:blank");
        let started = Instant::now();
        browser.navigate(url);
        drawn = browser
            .eval(flowd::browser::PAGE_READY)
            .as_u64()
            .unwrap_or(0);
        loads.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        expanded = browser
            .eval(flowd::browser::EXPAND_ALL)
            .as_u64()
            .unwrap_or(0);
        expansions.push(started.elapsed().as_secs_f64());
    }
    (median(loads), drawn, median(expansions), expanded)
}

pub(crate) fn render(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let shutdown = CancellationToken::new();
    let (full_dir, empty_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let full = open_store(full_dir.path())?;
    fill(
        &full,
        EDGES,
        SystemTime::now(),
        Duration::from_secs(60),
        None,
    )?;
    let full = runtime.block_on(serve_ui(full, shutdown.clone()))?;
    let empty = runtime.block_on(serve_ui(open_store(empty_dir.path())?, shutdown.clone()))?;
    let mut browser = flowd::browser::Browser::launch(1400, 1000);
    let (empty_s, ..) = render_seconds(&mut browser, &format!("http://{empty}/"), 3);
    let (full_s, folded, expand_s, edges) =
        render_seconds(&mut browser, &format!("http://{full}/"), 3);
    eprintln!(
        "bench: page timings (ms) {}; {folded} folded edges drawn at first",
        browser.eval("JSON.stringify(flowd.timings)")
    );
    anyhow::ensure!(
        edges as usize == EDGES,
        "expanded, the page drew {edges} edges of {EDGES}"
    );
    shutdown.cancel();
    Ok(vec![
        row(
            "page load to drawn graph, 1,000 workloads and 10,000 edges, namespaces collapsed \
             as it opens (ms, headless Chromium)",
            format!("{:.0}", full_s * 1e3),
            format!("{:.0} (empty history)", empty_s * 1e3),
            full_s / empty_s,
            "< 1000",
        ),
        row(
            "then every namespace expanded: 1,000 nodes, 10,000 edges drawn (ms)",
            format!("{:.0}", expand_s * 1e3),
            format!("{:.0} (load, collapsed)", full_s * 1e3),
            expand_s / full_s,
            "< 1000",
        ),
    ])
}
