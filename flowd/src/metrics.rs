//! Prometheus metrics, read from telemetry and the store at scrape time (no second bookkeeping).

use std::{net::SocketAddr, sync::Arc};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use tokio_util::sync::CancellationToken;

use crate::{store::FlowStore, telemetry::Telemetry};

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

#[derive(Debug)]
struct AgentCollector {
    telemetry: Arc<Telemetry>,
    store: Arc<FlowStore>,
}

impl std::fmt::Debug for FlowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowStore").finish_non_exhaustive()
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One counter family with a single label, e.g. lost records by cause.
fn labelled_counters<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (value_label, value) in values {
        let labels = vec![(label.to_owned(), value_label.to_owned())];
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for AgentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = &self.telemetry;
        use std::sync::atomic::Ordering::Relaxed;
        counter(
            &mut encoder,
            "flowd_flows_recorded",
            "Flow records produced",
            t.flows_recorded.load(Relaxed),
        )?;
        let verdicts = t.verdicts();
        labelled_counters(
            &mut encoder,
            "flowd_flows_by_verdict",
            "Flow records by verdict",
            "verdict",
            verdicts.iter().map(|(k, v)| (k.as_str(), *v)),
        )?;
        let drops = t.drop_reasons();
        labelled_counters(
            &mut encoder,
            "flowd_dropped_flows",
            "Dropped flow records by kernel drop reason",
            "reason",
            drops.iter().map(|(k, v)| (k.as_str(), *v)),
        )?;
        let counters = t.counters();
        let lost = t.lost(true);
        labelled_counters(
            &mut encoder,
            "flowd_lost_records",
            "Records or events lost, by cause",
            "cause",
            lost.iter().map(|(k, v)| (k.as_str(), *v)),
        )?;
        labelled_counters(
            &mut encoder,
            "flowd_events",
            "Kernel counters summed over CPUs and agent counters, by name; \
             kubernetes_<kind>_synced is 0 while that watch is failing (metadata stale)",
            "counter",
            counters.iter().map(|(k, v)| (k.as_str(), *v)),
        )?;
        gauge(
            &mut encoder,
            "flowd_flow_map_entries",
            "Connections in the kernel flow map",
            t.active_flows.load(Relaxed) as i64,
        )?;
        gauge(
            &mut encoder,
            "flowd_flow_map_capacity",
            "Capacity of the kernel flow map",
            t.flow_map_capacity as i64,
        )?;
        gauge(
            &mut encoder,
            "flowd_subscribers",
            "Open GetFlows streams",
            i64::from(t.subscribers.load(Relaxed)),
        )?;
        gauge(
            &mut encoder,
            "flowd_store_records",
            "Records in the node-local history",
            self.store.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "flowd_store_write_failing",
            "1 while the node-local history cannot be written (disk full, I/O error); records \
             wait in memory meanwhile",
            i64::from(self.store.write_failure().is_some()),
        )?;
        gauge(
            &mut encoder,
            "flowd_store_held_records",
            "Records waiting in memory for the history to be writable again",
            t.history_held.load(Relaxed) as i64,
        )?;
        gauge(
            &mut encoder,
            "flowd_store_bytes",
            "Bytes of records in the node-local history",
            self.store.record_bytes() as i64,
        )?;
        Ok(())
    }
}

pub fn registry(telemetry: Arc<Telemetry>, store: Arc<FlowStore>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AgentCollector { telemetry, store }));
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
        telemetry.count_verdicts([("dropped".to_owned(), 1)], [("NETFILTER_DROP", 1)]);
        let text = render(&registry(telemetry, Arc::new(store))).unwrap();
        for needle in [
            "flowd_lost_records_total{cause=\"slow_subscriber\"} 3",
            "flowd_lost_records_total{cause=\"kernel_ring_buffer_full\"} 2",
            "flowd_flows_by_verdict_total{verdict=\"dropped\"} 1",
            "flowd_dropped_flows_total{reason=\"NETFILTER_DROP\"} 1",
            "flowd_flow_map_capacity 4096",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}
