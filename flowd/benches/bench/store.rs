//! History ingest, the not-forwarded query and GetFlows streaming, each beside its cheapest baseline.

use super::*;

pub(crate) fn records(count: usize, not_forwarded_every: usize, end: SystemTime) -> Vec<pb::Flow> {
    (0..count)
        .map(|i| {
            let mut r = FlowRecord::sample((i % 60000) as u16);
            r.end = end;
            r.start = end - Duration::from_millis(20);
            if not_forwarded_every > 0 && i % not_forwarded_every == 0 {
                r.verdict = Verdict::Dropped;
            }
            wire::to_proto(&r)
        })
        .collect()
}

pub(crate) fn open_store(dir: &std::path::Path) -> anyhow::Result<FlowStore> {
    Ok(FlowStore::open(
        &dir.join("flows.redb"),
        Retention {
            max_age: Duration::from_secs(7 * 86400),
            max_bytes: u64::MAX,
        },
        64 << 20,
    )?)
}

/// Store ingest vs the cheapest durable log: the same encoded records appended to a file with
/// one fsync per batch.
pub(crate) fn store_ingest() -> anyhow::Result<Row> {
    const TOTAL: usize = 200_000;
    const BATCH: usize = 1_000;
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path())?;
    let flows = records(TOTAL, 100, SystemTime::now());
    let started = Instant::now();
    for chunk in flows.chunks(BATCH) {
        store.append(chunk.to_vec())?;
    }
    let store_rate = TOTAL as f64 / started.elapsed().as_secs_f64();

    let mut file = std::fs::File::create(dir.path().join("baseline.log"))?;
    let started = Instant::now();
    for chunk in flows.chunks(BATCH) {
        let mut buffer = Vec::new();
        for flow in chunk {
            flow.encode_length_delimited(&mut buffer)?;
        }
        file.write_all(&buffer)?;
        file.sync_data()?;
    }
    let file_rate = TOTAL as f64 / started.elapsed().as_secs_f64();
    Ok(row(
        "history ingest (records/s, batches of 1000, durable)",
        format!("{store_rate:.0}"),
        format!("{file_rate:.0} (append+fsync file)"),
        store_rate / file_rate,
        ">= 200000",
    ))
}

/// "What was dropped or denied in the last hour" on 1M records, index vs full scan.
pub(crate) fn dropped_last_hour() -> anyhow::Result<Row> {
    const TOTAL: usize = 1_000_000;
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path())?;
    let now = SystemTime::now();
    // 900k older records, 100k in the last hour; 1% of all are not forwarded.
    for (count, age) in [(900_000, 3 * 3600), (100_000, 600)] {
        let flows = records(count, 100, now - Duration::from_secs(age));
        for chunk in flows.chunks(5_000) {
            store.append(chunk.to_vec())?;
        }
    }
    let since_ns = (now - Duration::from_secs(3600))
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_nanos() as u64;
    let scan = |range: Range, filter: bool| -> anyhow::Result<(usize, Duration)> {
        let started = Instant::now();
        let mut found = 0;
        let mut resume = None;
        loop {
            resume = store.page(range, resume, |flow| {
                if !filter || flow.verdict != pb::Verdict::Forwarded as i32 {
                    found += 1;
                }
                ControlFlow::Continue(())
            })?;
            if resume.is_none() {
                return Ok((found, started.elapsed()));
            }
        }
    };
    let (indexed, index_time) = scan(
        Range::NotForwarded {
            since_ns,
            until_ns: u64::MAX,
        },
        false,
    )?;
    let (scanned, scan_time) = scan(Range::AfterCursor(0), true)?;
    anyhow::ensure!(indexed == 1_000, "index found {indexed}, expected 1000");
    anyhow::ensure!(scanned == TOTAL / 100, "scan found {scanned}");
    Ok(row(
        "dropped/denied in the last hour, 1M stored (ms)",
        format!("{:.1}", index_time.as_secs_f64() * 1e3),
        format!("{:.1} (full scan)", scan_time.as_secs_f64() * 1e3),
        index_time.as_secs_f64() / scan_time.as_secs_f64(),
        "< 100",
    ))
}

/// GetFlows to one consumer over the unix socket vs the same encoded records over a raw unix
/// socket pair.
pub(crate) fn streaming(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Row> {
    const TOTAL: usize = 200_000;
    let dir = tempfile::tempdir()?;
    let store = Arc::new(open_store(dir.path())?);
    let flows = records(TOTAL, 0, SystemTime::now());
    for chunk in flows.chunks(5_000) {
        store.append(chunk.to_vec())?;
    }
    runtime.block_on(async {
        let socket = dir.path().join("flowd.sock");
        let hub = Hub::new(store.clone(), 1024);
        let telemetry = Arc::new(Telemetry::new("bench", 1));
        let shutdown = CancellationToken::new();
        let listeners = Listeners::bind(&socket, None, None, None).await?;
        let server = tokio::spawn(api::serve(
            FlowApi::new(hub.clone(), telemetry),
            listeners,
            shutdown.clone(),
        ));
        let mut client = client::connect_unix(&socket).await?;
        let started = Instant::now();
        let mut stream = client
            .get_flows(pb::GetFlowsRequest {
                after_cursor: Some(0),
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut received = 0;
        while let Some(message) = stream.message().await? {
            if matches!(message.event, Some(pb::get_flows_response::Event::Flow(_))) {
                received += 1;
            }
        }
        let api_rate = received as f64 / started.elapsed().as_secs_f64();
        anyhow::ensure!(received == TOTAL, "received {received}");
        shutdown.cancel();
        hub.close();
        let _ = server.await;

        // Baseline: the same messages, length-delimited, through a raw unix socket pair.
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut tx, mut rx) = tokio::net::UnixStream::pair()?;
        let payload: Vec<Vec<u8>> = flows
            .iter()
            .map(|f| f.encode_length_delimited_to_vec())
            .collect();
        let started = Instant::now();
        let writer = tokio::spawn(async move {
            for chunk in payload.chunks(256) {
                tx.write_all(&chunk.concat()).await?;
            }
            Ok::<_, std::io::Error>(())
        });
        let mut buffer = Vec::new();
        rx.read_to_end(&mut buffer).await?;
        writer.await??;
        let mut cursor = buffer.as_slice();
        let mut decoded = 0;
        while !cursor.is_empty() {
            pb::Flow::decode_length_delimited(&mut cursor)?;
            decoded += 1;
        }
        let raw_rate = decoded as f64 / started.elapsed().as_secs_f64();
        Ok(row(
            "GetFlows streaming to one consumer, unix socket (flows/s)",
            format!("{api_rate:.0}"),
            format!("{raw_rate:.0} (raw socket, same messages)"),
            api_rate / raw_rate,
            ">= 500000",
        ))
    })
}
