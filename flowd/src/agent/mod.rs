//! Wires the pipeline: capture -> flow -> store -> api, tokio tasks joined by bounded channels.
//!
//! The agent is a library value, in the shape of mini-redis's `server::run(listener, shutdown)`:
//! the caller binds the listeners ([`AgentListeners`]) and owns the shutdown signal; [`run`]
//! serves until it fires, and [`RunningAgent`] is the in-process handle the demo, `flowd run`
//! and tests start and stop.

mod exporters;
mod handle;
mod listeners;

pub use handle::RunningAgent;
pub use listeners::AgentListeners;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, ApiError, FlowApi},
    attribution::{Attribution, Attributor},
    capture::{
        self, pins::PinDir, Attachments, CaptureError, CaptureTask, LinkWatch, LoadOptions,
        MapSizes, SweepTimeouts, Sweeper,
    },
    config::Config,
    enrich::{self, Enrichment, SharedIndex},
    export::{self, FileSink, FileSinkError},
    flow::{aggregate::Aggregation, assemble::Assembler},
    flow_metrics::{Counting, FlowMetrics},
    metrics::{self, MetricsError},
    model::SharedInterfaces,
    pipeline::Pipeline,
    store::{self, FlowStore, Hub, Retention, StoreError, StoreStage},
    telemetry::{Counter, Telemetry},
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Kubernetes(#[from] enrich::kubernetes::KubernetesError),
    #[error(transparent)]
    Export(#[from] FileSinkError),
    #[error(transparent)]
    Exporter(#[from] exporters::ExporterError),
    #[error("pipeline task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the agent on `listeners` until `shutdown` is cancelled. `ready` is called once programs
/// are attached and the API accepts connections.
pub async fn run(
    config: Config,
    listeners: AgentListeners,
    shutdown: CancellationToken,
    ready: impl FnOnce(&Telemetry),
) -> Result<(), AgentError> {
    let AgentListeners {
        api: listeners,
        metrics: metrics_listener,
        ui: ui_listener,
    } = listeners;
    let netns = config.netns_path();
    // Settings mistakes are said before anything is attached.
    let exporters = exporters::Sinks::from_config(&config)?;
    capture::check_privileges()?;
    // Configuration only, no request: an unreachable API server never delays capture.
    let kube_client = if config.kubernetes {
        Some(enrich::kubernetes::client().await?)
    } else {
        None
    };
    let netns_cookie = crate::netns::run_in(netns.as_deref(), crate::netns::current_cookie)
        .and_then(|cookie| cookie)
        .map_err(CaptureError::from)?;
    let pins = match config.pin_dir() {
        Some(dir) => Some(Arc::new(
            PinDir::open(
                dir,
                MapSizes {
                    flow_entries: config.flow_map_entries,
                    ring_buffer_bytes: config.ring_buffer_bytes,
                },
            )
            .map_err(CaptureError::from)?,
        )),
        None => None,
    };
    let mut programs = capture::load_programs(
        LoadOptions {
            sizes: MapSizes {
                flow_entries: config.flow_map_entries,
                ring_buffer_bytes: config.ring_buffer_bytes,
            },
            netns_cookie,
            drop_probe: config.drop_probe,
        },
        pins.as_deref(),
    )?;
    // Subscribe before the first attach: an interface created in between is not missed.
    let links = match LinkWatch::start(netns.as_deref(), config.netlink_receive_buffer) {
        Ok(links) => Some(links),
        Err(err) => {
            tracing::warn!(error = %err, "interfaces appearing later will not be followed");
            None
        }
    };
    let attachments = Attachments::attach(
        &mut programs.ebpf,
        netns.as_deref(),
        &config.interfaces,
        config.tc_attach,
        pins.clone(),
    )?;
    let telemetry = Arc::new(Telemetry::new(
        &config.node,
        u64::from(config.flow_map_entries),
    ));
    let interfaces: SharedInterfaces = Arc::default();

    // From here on an early return drops `attachments`, which detaches them.
    let store = Arc::new(FlowStore::open(
        &config.store_path,
        Retention {
            max_age: config.retention_max_age,
            max_bytes: config.retention_max_bytes,
        },
        config.store_cache_bytes,
    )?);
    if store.moved_aside().is_some() {
        telemetry.set_counter(Counter::HistoryMovedAside, 1);
    }
    let file_sink = match &config.export_file {
        Some(path) => Some(FileSink::open(
            path,
            config.export_file_max_bytes,
            config.export_file_max_files,
        )?),
        None => None,
    };
    let hub = Hub::new(store.clone(), config.subscriber_buffer);
    let drop_names = programs.drop_names.clone();
    if let Ok(mut loaded) = telemetry.programs.lock() {
        loaded.extend([capture::INGRESS_PROGRAM, capture::EGRESS_PROGRAM].map(str::to_owned));
        if let Some(drops) = &programs.drops {
            loaded.push(drops.program.to_owned());
        }
        if programs.sockets.is_some() {
            loaded.extend(capture::sockets::SocketHooks::names().map(str::to_owned));
        }
    }
    let loaded_programs = capture::program_stats::loaded_programs(&programs.ebpf);
    let (raw_tx, raw_rx) = mpsc::channel(config.pipeline_buffer);
    let mut pipeline = Pipeline::new(config.pipeline_buffer);
    pipeline.queues().watch("capture", &raw_tx);
    let pipeline_queues = pipeline.queues();
    let metadata: SharedIndex = Arc::new(std::sync::RwLock::new(Arc::new(enrich::load(
        &config.metadata_files,
    ))));

    // The capture stage stops on `shutdown`; every later stage stops when its input closes, so
    // what was counted flows all the way to the store before the API goes away.
    let capture_stop = shutdown.clone();
    let capture = tokio::spawn(capture::run(
        CaptureTask {
            programs,
            attachments,
            links,
            names: config.interfaces.clone(),
            interfaces: interfaces.clone(),
            sweeper: Sweeper::new(SweepTimeouts {
                active: config.active_timeout,
                idle: config.idle_timeout,
                end_grace: config.sweep_interval,
                unanswered: config.unanswered_timeout,
            })
            .with_overflow_limit(config.flow_map_entries as usize),
            sweep_interval: config.sweep_interval,
            telemetry: telemetry.clone(),
            keep_reported: pins.is_some(),
        },
        raw_tx,
        capture_stop,
    ));
    let records = pipeline.then(Assembler::new(&config.node, interfaces, drop_names), raw_rx);
    let cgroup_pods = enrich::cgroups::CgroupPods::from_mount_table().map(Arc::new);
    let enriched = pipeline.then(
        Enrichment {
            index: metadata.clone(),
            cgroups: cgroup_pods,
        },
        records,
    );
    // With policies (files, or the API's NetworkPolicies), attribution sits between enrichment
    // and aggregation: verdicts must be final before records are folded.
    let attributor = (!config.policy_files.is_empty() || config.kubernetes).then(|| {
        Arc::new(Attributor::load(
            &config.policy_files,
            &config.metadata_files,
        ))
    });
    // The Kubernetes source publishes the API's policies; the policy stage subscribes.
    let (api_policies, api_policies_rx) = match (&attributor, &kube_client) {
        (Some(_), Some(_)) => {
            let (tx, rx) = tokio::sync::watch::channel(Arc::default());
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let metadata_stop = CancellationToken::new();
    // With the API source, its rebuilder also rereads the files; otherwise files are watched.
    let metadata_tasks: Vec<tokio::task::JoinHandle<()>> = match kube_client {
        Some(client) => enrich::kubernetes::start(
            client,
            config.metadata_files.clone(),
            metadata,
            api_policies,
            telemetry.clone(),
            config.metadata_reload_interval,
            metadata_stop.clone(),
        ),
        None if !config.metadata_files.is_empty() => vec![tokio::spawn(enrich::watch_files(
            config.metadata_files.clone(),
            metadata,
            config.metadata_reload_interval,
            metadata_stop.clone(),
        ))],
        None => Vec::new(),
    };
    let policies_for_api = attributor.clone();
    let attributed = match attributor {
        Some(attributor) => pipeline.then(Attribution::new(attributor, api_policies_rx), enriched),
        None => enriched,
    };
    let aggregated = pipeline.then(
        Aggregation::new(config.aggregation, config.aggregation_interval),
        attributed,
    );
    // Counted before the store: a history that cannot be written delays records, not metrics.
    let flow_metrics = (!config.flow_metrics.is_empty())
        .then(|| Arc::new(FlowMetrics::new(&config.flow_metric_settings())));
    let counted = match &flow_metrics {
        Some(metrics) => pipeline.then(
            Counting {
                metrics: metrics.clone(),
            },
            aggregated,
        ),
        None => aggregated,
    };
    let store_stage = tokio::spawn(store::run(
        StoreStage {
            hub: hub.clone(),
            telemetry: telemetry.clone(),
            hold_records: config.store_hold_records,
            watermark_interval: config.watermark_interval,
        },
        counted,
    ));
    let summaries = tokio::spawn(crate::graph::summary::run(
        hub.clone(),
        summary_settle(&config),
    ));
    let export = file_sink
        .map(|sink| tokio::spawn(export::run_file_sink(sink, hub.clone(), telemetry.clone())));
    let running_exporters = exporters.running();
    let exporters = exporters.spawn(&config, &hub, &telemetry);
    let api_stop = CancellationToken::new();
    let mut flow_api = FlowApi::new(hub, telemetry.clone());
    if let Some(attributor) = policies_for_api {
        flow_api = flow_api.with_policies(attributor);
    }
    let flow_api = flow_api.with_limits(crate::api::ApiLimits {
        max_subscribers: config.max_subscribers,
        max_filters: config.max_filters,
        max_filter_values: config.max_filter_values,
        max_request_bytes: config.max_request_bytes,
        keepalive_interval: config.keepalive_interval,
        keepalive_timeout: config.keepalive_timeout,
        graph_max_edges: config.graph_max_edges,
        max_queries: config.max_queries,
    });
    let ui_server = ui_listener.map(|listener| {
        let router = crate::ui::router(Arc::new(flow_api.clone()));
        tokio::spawn(crate::ui::serve(router, listener, api_stop.clone()))
    });
    let server = tokio::spawn(api::serve(flow_api, listeners, api_stop.clone()));
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(metrics::serve(
            listener,
            metrics::registry(metrics::Sources {
                telemetry: telemetry.clone(),
                store: store.clone(),
                flows: flow_metrics,
                programs: loaded_programs,
                queues: Some(pipeline_queues),
                exporters: running_exporters,
            }),
            api_stop.clone(),
        ))
    });

    tracing::info!(
        socket = %config.socket.display(),
        listen = ?config.listen,
        interfaces = telemetry.interfaces().len(),
        "flowd ready"
    );
    ready(&telemetry);

    let capture_result = capture.await?;
    pipeline.join().await?;
    // Sources stop once enrichment has named every record it will get.
    metadata_stop.cancel();
    for task in metadata_tasks {
        task.await?;
    }
    store_stage.await?;
    summaries.await?;
    // An orderly stop flushed every count: nothing of flowd stays in the kernel. After a failed
    // capture the maps stay pinned, and the next agent reports what they hold.
    if let (Ok(()), Some(pins)) = (&capture_result, &pins) {
        pins.remove();
    }
    if let Some(export) = export {
        export.await?;
    }
    for exporter in exporters {
        exporter.await?;
    }
    api_stop.cancel();
    let server_result = server.await?;
    if let Some(metrics_server) = metrics_server {
        if let Err(err) = metrics_server.await? {
            tracing::warn!(error = %err, "metrics server");
        }
    }
    if let Some(ui_server) = ui_server {
        if let Err(err) = ui_server.await? {
            tracing::warn!(error = %err, "UI server");
        }
    }
    capture_result?;
    server_result?;
    Ok(())
}

/// How long after a minute ends its records may still be stored: a flow is reported at the
/// latest an idle timeout after its last packet, a sweep later, and folding levels hold it for
/// their interval; a margin covers the pipeline. Later records are still stored; they only
/// cost that minute its graph summary.
pub fn summary_settle(config: &crate::config::Config) -> std::time::Duration {
    let folding = if config.aggregation == crate::flow::aggregate::Level::Connection {
        std::time::Duration::ZERO
    } else {
        config.aggregation_interval
    };
    config.idle_timeout
        + config.active_timeout
        + config.sweep_interval
        + folding
        + std::time::Duration::from_secs(10)
}
