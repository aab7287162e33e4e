//! Exporters end to end: 200,000 stored records delivered, acknowledged batch by batch, to an
//! OTLP/gRPC receiver (an in-process tonic server built from the official protobufs, counting
//! what it receives) and to a local Kafka-protocol broker (tansu, in memory, acks from all
//! in-sync replicas), each against reading the same records from the history as an exporter
//! does (its input, without a receiving end).

use std::sync::atomic::{AtomicU64, Ordering};

use flowd::{
    export::{
        self, CursorFile, Delivery, KafkaCompression, KafkaFormat, KafkaSettings, KafkaSink,
        OtlpSink, Sink,
    },
    query::FlowMatcher,
    store::Backlog,
    telemetry::{Counter, ExportCount, Exporter},
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    logs_service_server::{LogsService, LogsServiceServer},
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};

use super::*;
use crate::store::open_store;

const RECORDS: usize = 200_000;

/// Counts the log records it receives.
#[derive(Clone, Default)]
struct CountingReceiver(Arc<AtomicU64>);

#[tonic::async_trait]
impl LogsService for CountingReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let records: usize = request
            .get_ref()
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        self.0.fetch_add(records as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// The request's framing down to each log record, whose bytes are kept undecoded: a receiver
/// that checks and counts what arrives at a small part of what decoding every attribute into
/// the official types costs (the "OTLP encoding alone" row measures that), so the exporter's
/// figure is the exporter's, not prost's on the receiving side sharing its two cores.
#[derive(Clone, PartialEq, prost::Message)]
struct FramedRequest {
    #[prost(message, repeated, tag = "1")]
    resource_logs: Vec<FramedResourceLogs>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FramedResourceLogs {
    #[prost(message, repeated, tag = "2")]
    scope_logs: Vec<FramedScopeLogs>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FramedScopeLogs {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    log_records: Vec<bytes::Bytes>,
}

/// LogsService/Export over `FramedRequest`, counting log records.
#[derive(Clone, Default)]
struct FramingReceiver(Arc<AtomicU64>);

impl tonic::server::NamedService for FramingReceiver {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

impl tonic::server::UnaryService<FramedRequest> for FramingReceiver {
    type Response = ExportLogsServiceResponse;
    type Future = std::future::Ready<Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<FramedRequest>) -> Self::Future {
        let records: usize = request
            .get_ref()
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        self.0.fetch_add(records as u64, Ordering::Relaxed);
        std::future::ready(Ok(tonic::Response::new(
            ExportLogsServiceResponse::default(),
        )))
    }
}

impl<B> tower::Service<http::Request<B>> for FramingReceiver
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = self.clone();
        Box::pin(async move {
            let codec =
                tonic_prost::ProstCodec::<ExportLogsServiceResponse, FramedRequest>::default();
            let mut grpc =
                tonic::server::Grpc::new(codec).apply_max_message_size_config(Some(64 << 20), None);
            Ok(grpc.unary(method, request).await)
        })
    }
}

/// A history of RECORDS records, and a cursor file that starts an exporter at its beginning.
fn history(dir: &std::path::Path) -> anyhow::Result<Hub> {
    let store = open_store(dir)?;
    let end = SystemTime::now();
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(5_000) {
        store.append(
            chunk
                .iter()
                .map(|i| super::graph::record(*i, end))
                .collect(),
        )?;
    }
    Ok(Hub::new(Arc::new(store), 16_384))
}

/// Seconds to deliver the whole history through `sink`, until `delivered` says all arrived.
async fn deliver<S: Sink + 'static>(
    hub: &Hub,
    dir: &std::path::Path,
    exporter: Exporter,
    sink: S,
    batch_records: usize,
    telemetry: &Arc<Telemetry>,
    delivered: impl Fn() -> u64,
) -> anyhow::Result<f64> {
    let cursor = CursorFile::new(dir.join(format!("{}.cursor", exporter.name())));
    cursor.save(0)?;
    let started = Instant::now();
    let task = tokio::spawn(export::run_delivery(
        sink,
        Delivery {
            exporter,
            cursor,
            matcher: FlowMatcher::all(),
            batch_records,
            batch_wait: Duration::from_millis(200),
            retry_max: Duration::from_secs(1),
        },
        hub.clone(),
        telemetry.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(300);
    while delivered() < RECORDS as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} delivered {} of {RECORDS} in 300 s (failed {:?})",
            exporter.name(),
            delivered(),
            telemetry.counter(&Counter::Export(exporter, ExportCount::Failed))
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Gone before the next run saves its cursor in the same file: an abort is only a request.
    task.abort();
    let _ = task.await;
    Ok(seconds)
}

/// Seconds to read the whole history as an exporter's subscription does, and what it read.
async fn read(hub: &Hub) -> anyhow::Result<(f64, Vec<Arc<flowd::proto::v1::Flow>>)> {
    let started = Instant::now();
    let mut subscription = hub.subscribe(
        Backlog::Range(Range::AfterCursor(0)),
        false,
        FlowMatcher::all(),
    );
    let mut read = Vec::with_capacity(RECORDS);
    while let Some(event) = subscription.next().await {
        if let flowd::store::SubscriptionEvent::Flow(flow) = event? {
            read.push(flow);
        }
    }
    anyhow::ensure!(read.len() == RECORDS, "read {} of {RECORDS}", read.len());
    Ok((started.elapsed().as_secs_f64(), read))
}

/// The OTLP exporter's own work, and the receiver's, apart: seconds to encode every record in
/// requests of 1,000 (the exporter), and to decode those requests into the official types and
/// drop them (what the bench's receiver does with each).
fn otlp_codec(flows: &[Arc<flowd::proto::v1::Flow>]) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let requests: Vec<_> = flows
        .chunks(1000)
        .map(flowd::export::otlp_encode_request)
        .collect();
    let encode_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut decoded = 0;
    for request in requests {
        let request = ExportLogsServiceRequest::decode(request)?;
        decoded += request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum::<usize>();
    }
    anyhow::ensure!(
        decoded == flows.len(),
        "decoded {decoded} of {}",
        flows.len()
    );
    Ok((encode_s, started.elapsed().as_secs_f64()))
}

/// A tansu broker in memory on `port`, with the topic.
fn broker(port: u16) -> anyhow::Result<flowd::kafka_broker::KafkaBroker> {
    let broker = flowd::kafka_broker::KafkaBroker::start(port, None);
    let tool =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/receivers/kafka_tool.py");
    let status = Command::new("python3")
        .arg(tool)
        .args([
            "create-topic",
            &format!("127.0.0.1:{port}"),
            "flowd.flows",
            "3",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "creating the topic: {status}");
    Ok(broker)
}

/// Seconds to deliver the history to `receiver`, served on loopback, which counts what it got
/// in `received`.
async fn otlp<R>(
    hub: &Hub,
    dir: &std::path::Path,
    telemetry: &Arc<Telemetry>,
    receiver: R,
    received: Arc<AtomicU64>,
) -> anyhow::Result<f64>
where
    R: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    R::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let server = tonic::transport::Server::builder()
        .add_service(receiver)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.clone().cancelled_owned(),
        );
    let server = tokio::spawn(server);
    let sink = OtlpSink::new(&format!("http://{addr}"), Duration::from_secs(10))?;
    let seconds = deliver(hub, dir, Exporter::Otlp, sink, 1000, telemetry, || {
        received.load(Ordering::Relaxed)
    })
    .await?;
    shutdown.cancel();
    let _ = server.await;
    Ok(seconds)
}

pub(crate) fn export(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let hub = history(dir.path())?;
    let telemetry = Arc::new(Telemetry::new("bench", 1));
    runtime.block_on(async {
        let (read_s, flows) = read(&hub).await?;
        let read_rate = RECORDS as f64 / read_s;
        let (encode_s, decode_s) = otlp_codec(&flows)?;
        drop(flows);

        let framing = FramingReceiver::default();
        let otlp_s = otlp(&hub, dir.path(), &telemetry, framing.clone(), framing.0.clone()).await?;
        let decoding = CountingReceiver::default();
        let decoding_s = otlp(
            &hub,
            dir.path(),
            &telemetry,
            LogsServiceServer::new(decoding.clone()).max_decoding_message_size(64 << 20),
            decoding.0.clone(),
        )
        .await?;

        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let _broker = tokio::task::block_in_place(|| broker(port))?;
        let sent = || {
            telemetry
                .counter(&Counter::Export(Exporter::Kafka, ExportCount::Sent))
                .unwrap_or(0)
        };
        // The same records with each compression the exporter offers, the default first.
        let mut kafka_s = Vec::new();
        for compression in [KafkaCompression::default(), KafkaCompression::Snappy, KafkaCompression::None] {
            let sink = KafkaSink::new(KafkaSettings {
                brokers: vec![format!("127.0.0.1:{port}")],
                topic: "flowd.flows".into(),
                format: KafkaFormat::Protobuf,
                compression,
                timeout: Duration::from_secs(10),
                tls: None,
                sasl: None,
            });
            let before = sent();
            let seconds = deliver(&hub, dir.path(), Exporter::Kafka, sink, 5000, &telemetry, || {
                sent() - before
            })
            .await?;
            kafka_s.push(seconds);
        }
        let baseline = format!("{read_rate:.0} (reading the same records)");
        let [gzip_s, snappy_s, none_s] = [kafka_s[0], kafka_s[1], kafka_s[2]];
        anyhow::Ok(vec![
            row(
                "OTLP export, 200,000 records to an OTLP/gRPC receiver counting them, acknowledged (records/s)",
                format!("{:.0}", RECORDS as f64 / otlp_s),
                baseline.clone(),
                read_s / otlp_s,
                ">= 200000",
            ),
            row(
                "the same, the receiver decoding every attribute into the official types (records/s)",
                format!("{:.0}", RECORDS as f64 / decoding_s),
                baseline.clone(),
                read_s / decoding_s,
                "-",
            ),
            row(
                "OTLP encoding alone, requests of 1,000 (records/s)",
                format!("{:.0}", RECORDS as f64 / encode_s),
                format!("{:.0} (the receiver decoding them)", RECORDS as f64 / decode_s),
                decode_s / encode_s,
                "-",
            ),
            row(
                "Kafka export, 200,000 records to a local broker (tansu, memory), acks=all, gzip (records/s)",
                format!("{:.0}", RECORDS as f64 / gzip_s),
                baseline.clone(),
                read_s / gzip_s,
                ">= 200000",
            ),
            row(
                "the same, kafkaCompression snappy (records/s)",
                format!("{:.0}", RECORDS as f64 / snappy_s),
                baseline.clone(),
                read_s / snappy_s,
                "-",
            ),
            row(
                "the same, kafkaCompression none (records/s)",
                format!("{:.0}", RECORDS as f64 / none_s),
                baseline,
                read_s / none_s,
                "-",
            ),
        ])
    })
}
