//! Prometheus metrics, read from telemetry and the store at scrape time (no second bookkeeping).

mod agent;
mod cost;
mod encode;
mod flows;

use std::{net::SocketAddr, sync::Arc};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Registry};
use tokio_util::sync::CancellationToken;

use crate::{
    capture::program_stats::LoadedProgram,
    flow_metrics::FlowMetrics,
    pipeline::Queues,
    store::FlowStore,
    telemetry::{Exporter, Telemetry},
};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics server failed: {0}")]
    Serve(std::io::Error),
}

/// Everything a scrape reads; nothing is counted twice for its sake.
#[derive(Debug)]
pub struct Sources {
    pub telemetry: Arc<Telemetry>,
    pub store: Arc<FlowStore>,
    /// The flow metrics stage's totals; `None` with every flow metric off.
    pub flows: Option<Arc<FlowMetrics>>,
    /// The agent's BPF programs, for their run statistics.
    pub programs: Vec<LoadedProgram>,
    pub queues: Option<Queues>,
    /// Exporters running, each with its delivery families.
    pub exporters: Vec<Exporter>,
}

impl Sources {
    pub fn new(telemetry: Arc<Telemetry>, store: Arc<FlowStore>) -> Self {
        Self {
            telemetry,
            store,
            flows: None,
            programs: Vec::new(),
            queues: None,
            exporters: Vec::new(),
        }
    }
}

impl std::fmt::Debug for FlowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowStore").finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct AgentCollector(Sources);

impl Collector for AgentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        agent::encode(&self.0, &mut encoder)?;
        if let Some(flows) = &self.0.flows {
            flows::encode(flows, &mut encoder)?;
        }
        cost::encode(&self.0, &mut encoder)
    }
}

pub fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AgentCollector(sources)));
    registry
}

pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// Binds first so a wrong address fails the start, not a later scrape.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, MetricsError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serves `GET /metrics` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<(), MetricsError> {
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                match render(&registry) {
                    Ok(text) => (
                        axum::http::StatusCode::OK,
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    ),
                    Err(_) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        [(axum::http::header::CONTENT_TYPE, "text/plain")],
                        "encoding metrics failed".to_owned(),
                    ),
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(MetricsError::Serve)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::Retention;

    #[test]
    fn scrape_shows_losses_verdicts_and_map_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = FlowStore::open(
            &dir.path().join("f.redb"),
            Retention {
                max_age: Duration::from_secs(60),
                max_bytes: u64::MAX,
            },
            1 << 20,
        )
        .unwrap();
        let telemetry = Arc::new(Telemetry::new("n", 4096));
        telemetry.add_lost(crate::telemetry::LostCause::SlowSubscriber, 3);
        telemetry.set_counter(crate::telemetry::Counter::RING_BUFFER_FULL, 2);
        let flows = Arc::new(FlowMetrics::new(
            &crate::config::Config::default().flow_metric_settings(),
        ));
        let mut dropped = crate::model::FlowRecord::sample(40000);
        dropped.verdict = crate::model::Verdict::Dropped;
        dropped.request.dropped_packets = 1;
        dropped.drop_reason = Some("NETFILTER_DROP".into());
        flows.count(&[dropped]);
        let mut sources = Sources::new(telemetry, Arc::new(store));
        sources.flows = Some(flows);
        sources.exporters = vec![Exporter::Kafka];
        let text = render(&registry(sources)).unwrap();
        for needle in [
            "flowd_lost_records_total{cause=\"slow_subscriber\"} 3",
            "flowd_lost_records_total{cause=\"kernel_ring_buffer_full\"} 2",
            "flowd_flows_total{verdict=\"dropped\",protocol=\"UDP\",direction=\"egress\"} 1",
            "flowd_kernel_dropped_packets_total{reason=\"NETFILTER_DROP\"} 1",
            "flowd_flow_bytes_total{verdict=\"dropped\",protocol=\"UDP\",direction=\"egress\"} 180",
            "flowd_export_records_total{exporter=\"kafka\",result=\"sent\"} 0",
            "flowd_agent_resident_memory_bytes ",
            "flowd_agent_cpu_seconds_total ",
            "flowd_flow_map_capacity 4096",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}
