//! `cargo xtask bench` (or `cargo bench -p flowd --bench bench`): every figure is measured next
//! to a baseline run in the same go, and reported as a ratio. Prints a markdown table.
//! Kernel and agent sections need root; they are skipped (and say so) otherwise.

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr, UdpSocket},
    ops::ControlFlow,
    process::Command,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use flowd::{
    api::{self, client, FlowApi, Listeners},
    capture::{load_programs, LoadOptions, MapSizes},
    flow::{wire, FlowRecord, Verdict},
    netns,
    proto::v1 as pb,
    store::{FlowStore, Hub, Range, Retention},
    telemetry::Telemetry,
    testbed::{self, TwoHosts},
};
use flowd_common::packets::{eth, tcp4, udp6, v6, V4_A, V4_B};
use prost::Message as _;
use tokio_util::sync::CancellationToken;

/// Counts live heap bytes while `counting_heap` runs, so a structure's memory is measured
/// exactly rather than through RSS (which an allocator keeping freed pages blurs). Off the rest
/// of the time: one counter every thread's allocations write is contended, and it slowed the
/// multi-threaded sections (the exporters) by more than the work they measure.
struct CountingAllocator;

static LIVE_BYTES: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);
static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if COUNTING.load(std::sync::atomic::Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        if COUNTING.load(std::sync::atomic::Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// What `build` makes, and the heap bytes it left allocated (made and not freed meanwhile).
fn counting_heap<T>(build: impl FnOnce() -> T) -> (T, usize) {
    use std::sync::atomic::Ordering::Relaxed;
    LIVE_BYTES.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let built = build();
    COUNTING.store(false, Relaxed);
    (built, LIVE_BYTES.load(Relaxed).max(0) as usize)
}

struct Row {
    what: String,
    value: String,
    baseline: String,
    ratio: String,
    target: String,
}

fn row(what: &str, value: String, baseline: String, ratio: f64, target: &str) -> Row {
    Row {
        what: what.into(),
        value,
        baseline,
        ratio: format!("{ratio:.2}"),
        target: target.into(),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

mod agent;
mod e2e;
mod enrichment;
mod export;
mod graph;
mod kernel;
mod metrics;
mod policies;
mod relay;
mod store;

use agent::agent;
use e2e::end_to_end;
use enrichment::enrichment;
use kernel::kernel_cost;
use policies::policies;
use relay::relay;
use store::{dropped_last_hour, store_ingest, streaming};

/// `FLOWD_BENCH_ONLY=enrichment,policies` runs only the named sections (for iterating on one).
fn wanted(section: &str) -> bool {
    std::env::var("FLOWD_BENCH_ONLY")
        .map(|only| only.split(',').any(|s| s.trim() == section))
        .unwrap_or(true)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; nothing else is expected.
    if std::env::var_os("RUST_LOG").is_some() {
        // What the agent's stages say, when a section needs looking into.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    if wanted("store") {
        rows.extend([store_ingest()?, dropped_last_hour()?, streaming(&runtime)?]);
    }
    if wanted("enrichment") {
        rows.extend(enrichment()?);
    }
    if wanted("policies") {
        rows.extend(policies()?);
    }
    if wanted("relay") {
        rows.extend(relay(&runtime)?);
    }
    if wanted("metrics") {
        rows.extend(metrics::flow_metrics(&runtime)?);
    }
    if wanted("graph") {
        rows.extend(graph::aggregation()?);
    }
    if wanted("export") {
        rows.extend(export::export(&runtime)?);
    }
    if wanted("page") {
        rows.extend(graph::render(&runtime)?);
    }
    if !is_root() {
        eprintln!("bench: not root, kernel and agent sections skipped");
    } else {
        if wanted("kernel") {
            rows.extend(kernel_cost()?);
        }
        if wanted("agent") {
            rows.extend(agent(&runtime)?);
        }
        if wanted("e2e") {
            rows.extend(end_to_end(&runtime)?);
        }
    }
    println!("| measurement | flowd | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what, r.value, r.baseline, r.ratio, r.target
        );
    }
    Ok(())
}
