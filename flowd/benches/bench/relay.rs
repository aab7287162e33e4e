//! The relay: fan-in of three nodes' stored records to one consumer, against the same three
//! streams read directly side by side; and the relay process's memory over 100 nodes.

use std::collections::BTreeMap;

use flowd::relay::{PeerSet, PeerTarget, PeerTiming, Position, RelayOptions, RelayService};

use super::*;
use crate::store::{open_store, records};

/// An agent API (no kernel) on loopback TCP over `store`, named `node`.
struct FakeNode {
    addr: SocketAddr,
    shutdown: CancellationToken,
    hub: Hub,
}

async fn serve_node(store: Arc<FlowStore>, node: &str) -> anyhow::Result<FakeNode> {
    let hub = Hub::new(store, 1024);
    let telemetry = Arc::new(Telemetry::new(node, 1));
    let shutdown = CancellationToken::new();
    let listeners = Listeners::bind_tcp(SocketAddr::from(([127, 0, 0, 1], 0)), None).await?;
    let addr = listeners.tcp_addr().context("bound")?;
    // What a node's store stage does: tell watermark followers (the relay) that time moved on.
    let pulse = hub.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = ticks.tick() => pulse.pulse_watermark(),
                () = stop.cancelled() => return,
            }
        }
    });
    tokio::spawn(api::serve(
        FlowApi::new(hub.clone(), telemetry),
        listeners,
        shutdown.clone(),
    ));
    Ok(FakeNode {
        addr,
        shutdown,
        hub,
    })
}

impl FakeNode {
    fn stop(&self) {
        self.shutdown.cancel();
        self.hub.close();
    }
}

/// Reads a whole non-following stream; the number of flows in it.
async fn drain(mut stream: tonic::Streaming<pb::GetFlowsResponse>) -> anyhow::Result<usize> {
    let mut flows = 0;
    while let Some(message) = stream.message().await? {
        if matches!(message.event, Some(pb::get_flows_response::Event::Flow(_))) {
            flows += 1;
        }
    }
    Ok(flows)
}

fn options(peers: Vec<PeerTarget>) -> RelayOptions {
    RelayOptions {
        name: "bench-relay".into(),
        peers: PeerSet::fixed(peers),
        timing: PeerTiming::default(),
        peer_buffer: 256,
        checkpoint_interval: Duration::from_secs(1),
        limits: api::ApiLimits::default(),
    }
}

pub(crate) fn relay(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    Ok(vec![fan_in(runtime)?, relay_memory(runtime)?])
}

fn fan_in(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Row> {
    const PER_NODE: usize = 200_000;
    const NODES: usize = 3;
    let dir = tempfile::tempdir()?;
    let stores: Vec<Arc<FlowStore>> = (0..NODES)
        .map(|n| {
            let path = dir.path().join(format!("node-{n}"));
            open_store(&path).map(Arc::new)
        })
        .collect::<anyhow::Result<_>>()?;
    // Appended round-robin, so the nodes' recorded times interleave as on a real cluster.
    let flows = records(PER_NODE, 0, SystemTime::now());
    for chunk in flows.chunks(5_000) {
        for store in &stores {
            store.append(chunk.to_vec())?;
        }
    }
    runtime.block_on(async {
        let mut nodes = Vec::new();
        for (n, store) in stores.iter().enumerate() {
            nodes.push(serve_node(store.clone(), &format!("node-{n}")).await?);
        }
        // Baseline: the three streams read directly, side by side.
        let started = Instant::now();
        let reads = nodes.iter().map(|node| async move {
            let mut client = client::connect_tcp(node.addr, None).await?;
            let stream = client
                .get_flows(pb::GetFlowsRequest {
                    after_cursor: Some(0),
                    ..Default::default()
                })
                .await?
                .into_inner();
            drain(stream).await
        });
        let direct: usize = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .sum();
        let direct_rate = direct as f64 / started.elapsed().as_secs_f64();

        let peers = nodes
            .iter()
            .map(|node| PeerTarget {
                address: node.addr.to_string(),
                tls: None,
            })
            .collect();
        let listeners = Listeners::bind_tcp(SocketAddr::from(([127, 0, 0, 1], 0)), None).await?;
        let relay_addr = listeners.tcp_addr().context("bound")?;
        let shutdown = CancellationToken::new();
        let relay_options = options(peers);
        let limits = relay_options.limits;
        tokio::spawn(api::serve_service(
            flowd::relay::PassThrough::new(
                RelayService::new(relay_options),
                limits.max_request_bytes,
            ),
            limits,
            listeners,
            shutdown.clone(),
        ));
        // Every node from its first record: a position at cursor 0 on each.
        let position = Position {
            cursors: (0..NODES)
                .map(|n| (format!("node-{n}"), 0))
                .collect::<BTreeMap<_, _>>(),
            created_ns: 0,
        };
        let mut client = client::connect_tcp(relay_addr, None).await?;
        let started = Instant::now();
        let stream = client
            .get_flows(pb::GetFlowsRequest {
                resume_token: position.encode(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let merged = drain(stream).await?;
        let relay_rate = merged as f64 / started.elapsed().as_secs_f64();
        anyhow::ensure!(
            merged == NODES * PER_NODE && direct == merged,
            "relay delivered {merged}, direct {direct}, of {}",
            NODES * PER_NODE
        );
        shutdown.cancel();
        for node in &nodes {
            node.stop();
        }
        Ok(row(
            "relay fan-in: 3 nodes' stored records, merged in time order to one consumer (flows/s)",
            format!("{relay_rate:.0}"),
            format!("{direct_rate:.0} (the 3 streams read directly, side by side)"),
            relay_rate / direct_rate,
            ">= 300000",
        ))
    })
}

/// The relay process's resident memory with 100 nodes: idle, then with a consumer following
/// all of them (every node stream open) after reading their whole histories.
fn relay_memory(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Row> {
    const NODES: usize = 100;
    const PER_NODE: usize = 2_000;
    let dir = tempfile::tempdir()?;
    runtime.block_on(async {
        let mut nodes = Vec::new();
        let flows = records(PER_NODE, 0, SystemTime::now());
        for n in 0..NODES {
            let store = Arc::new(open_store(&dir.path().join(format!("node-{n}")))?);
            store.append(flows.clone())?;
            nodes.push(serve_node(store, &format!("node-{n}")).await?);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let relay_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = Command::new(env!("CARGO_BIN_EXE_flowd"));
        command.args(["relay", "--listen", &relay_addr.to_string()]);
        for node in &nodes {
            command.arg("--peer").arg(node.addr.to_string());
        }
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut client = loop {
            match client::connect_tcp(relay_addr, None).await {
                Ok(client) => break client,
                Err(_) if child.try_wait()?.is_none() => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(err) => anyhow::bail!("the relay did not start: {err}"),
            }
        };
        let rss = |pid: u32| -> anyhow::Result<f64> {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let kb: f64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .context("VmRSS")?
                .parse()?;
            Ok(kb / 1024.0)
        };
        let idle = rss(child.id())?;
        let position = Position {
            cursors: (0..NODES).map(|n| (format!("node-{n}"), 0)).collect(),
            created_ns: 0,
        };
        let mut stream = client
            .get_flows(pb::GetFlowsRequest {
                resume_token: position.encode(),
                follow: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut flows = 0;
        while flows < NODES * PER_NODE {
            match stream.message().await? {
                Some(pb::GetFlowsResponse {
                    event: Some(pb::get_flows_response::Event::Flow(_)),
                }) => flows += 1,
                Some(_) => {}
                None => anyhow::bail!("the relay ended a following stream"),
            }
        }
        let following = rss(child.id())?;
        let _ = child.kill();
        let _ = child.wait();
        for node in &nodes {
            node.stop();
        }
        Ok(row(
            "relay RSS, 100 nodes followed after reading their 200,000 records (MiB)",
            format!("{following:.1}"),
            format!("{idle:.1} (the same relay before any call)"),
            following / idle,
            "< 100",
        ))
    })
}
