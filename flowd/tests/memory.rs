//! Bounded memory under a request that could ask for everything. Alone in its test binary: the
//! process's resident size is the measurement, and other tests would move it.

use std::{sync::Arc, time::Duration};

use flowd::{
    api::{self, client, FlowApi, Listeners},
    flow::FlowRecord,
    proto::v1::{self as pb, get_flows_response::Event},
    store::{FlowStore, Hub, Retention},
    telemetry::Telemetry,
};
use tokio_util::sync::CancellationToken;

/// Resident set of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_two_to_the_63_over_200k_records_streams_in_bounded_memory() {
    const RECORDS: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        FlowStore::open(
            &dir.path().join("flows.redb"),
            Retention {
                max_age: Duration::MAX,
                max_bytes: u64::MAX,
            },
            // A small page cache: the cache fills as the replay reads, and is not what is measured.
            1 << 20,
        )
        .expect("open store"),
    );
    let hub = Hub::new(store.clone(), 1024);
    let telemetry = Arc::new(Telemetry::new("n", 1024));
    for batch in 0..RECORDS / 10_000 {
        let records = (0..10_000u64)
            .map(|i| FlowRecord::sample(((batch * 10_000 + i) % 60_000) as u16))
            .collect();
        hub.publish(records, &telemetry).await;
    }
    assert_eq!(store.len(), RECORDS);
    let history_bytes = store.record_bytes();

    let socket = dir.path().join("flowd.sock");
    let listeners = Listeners::bind(&socket, None, None, None)
        .await
        .expect("bind");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(api::serve(
        FlowApi::new(hub.clone(), telemetry.clone()),
        listeners,
        shutdown.clone(),
    ));
    let mut client = client::connect_unix(&socket).await.expect("connect");
    let before = resident_bytes();
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            last: 1 << 63,
            ..Default::default()
        })
        .await
        .expect("GetFlows")
        .into_inner();
    let (mut received, mut peak, mut previous) = (0u64, before, 0u64);
    while let Some(response) = stream.message().await.expect("stream") {
        if let Some(Event::Flow(flow)) = response.event {
            assert!(flow.cursor > previous, "in cursor order");
            previous = flow.cursor;
            received += 1;
            if received % 10_000 == 0 {
                peak = peak.max(resident_bytes());
            }
        }
    }
    assert_eq!(received, RECORDS, "every record, once");
    let grown = peak.saturating_sub(before);
    eprintln!("streamed {received} records of a {history_bytes}-byte history; resident size grew {grown} bytes");
    // Holding the replay whole would cost several times the encoded history.
    assert!(
        grown < history_bytes / 3,
        "resident size grew {grown} bytes while streaming a {history_bytes}-byte history"
    );
    hub.close();
    shutdown.cancel();
    server.await.expect("join").expect("serve");
}
