//! `flowd demo`: the agent, for real, on two throwaway namespaces with traffic it makes itself.

use std::{collections::HashSet, net::IpAddr, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Args;

use super::{format, run};
use crate::{
    agent::RunningAgent,
    config::Config,
    proto::v1 as pb,
    testbed::{self, TwoHosts},
};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Give up waiting for the generated flows after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Where the seed story's web UI listens (loopback).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4247")]
    pub ui_listen: std::net::SocketAddr,
    /// How long the page stays up after the story (Ctrl-C ends it sooner; 0s not at all).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    pub ui_for: Duration,
}

pub async fn execute(args: DemoArgs) -> anyhow::Result<ExitCode> {
    run::init_logging("warn", run::LogFormat::Text)?;
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "the demo creates network namespaces and loads eBPF programs: run it as root"
        );
    }
    let hosts = TwoHosts::create("demo").context("creating the demo namespaces")?;
    println!(
        "demo: namespaces {} ({} / {}) and {} ({} / {}) joined by {}",
        hosts.a.name,
        testbed::HOST_A_V4,
        testbed::HOST_A_V6,
        hosts.b.name,
        testbed::HOST_B_V4,
        testbed::HOST_B_V6,
        testbed::VETH
    );
    let workdir = std::env::temp_dir().join(format!("flowd-demo-{}", std::process::id()));
    let config = Config {
        interfaces: vec![testbed::VETH.to_owned()],
        netns: Some(hosts.a.path()),
        socket: workdir.join("flowd.sock"),
        store_path: workdir.join("flows.redb"),
        active_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let agent = RunningAgent::start(config).await?;
    println!(
        "demo: agent attached to {} in {}",
        testbed::VETH,
        hosts.a.name
    );

    let mut stream = agent.follow().await?;

    let traffic_hosts = &hosts;
    let expected = tokio::task::block_in_place(|| -> anyhow::Result<HashSet<(i32, u32)>> {
        let mut expected = HashSet::new();
        for server in [
            IpAddr::V4(testbed::HOST_B_V4),
            IpAddr::V6(testbed::HOST_B_V6),
        ] {
            let tcp = testbed::tcp_exchange(traffic_hosts, server, 20_000, 50_000)?;
            expected.insert((pb::Protocol::Tcp as i32, u32::from(tcp.client.port())));
            let udp = testbed::udp_exchange(traffic_hosts, server, 5, 512)?;
            expected.insert((pb::Protocol::Udp as i32, u32::from(udp.client.port())));
            println!(
                "demo: TCP {} -> {}, UDP {} -> {}",
                tcp.client, tcp.server, udp.client, udp.server
            );
        }
        testbed::ping(traffic_hosts, IpAddr::V4(testbed::HOST_B_V4), 3)?;
        testbed::ping(traffic_hosts, IpAddr::V6(testbed::HOST_B_V6), 3)?;
        println!(
            "demo: 3 pings each to {} and {}",
            testbed::HOST_B_V4,
            testbed::HOST_B_V6
        );
        Ok(expected)
    })?;

    println!(
        "demo: flows as `flowd dump` shows them:\n\n{}",
        format::TABLE_HEADER
    );
    let mut seen = HashSet::new();
    let mut icmp_seen = false;
    let deadline = tokio::time::Instant::now() + args.timeout;
    while !(expected.iter().all(|k| seen.contains(k)) && icmp_seen) {
        let message = tokio::time::timeout_at(deadline, stream.message()).await;
        let Ok(Ok(Some(response))) = message else {
            break;
        };
        if let Some(pb::get_flows_response::Event::Flow(flow)) = response.event {
            println!("{}", format::flow_line(&flow));
            let client_port = flow.source.as_ref().map(|s| s.port).unwrap_or_default();
            seen.insert((flow.protocol, client_port));
            icmp_seen |= flow.protocol == pb::Protocol::Icmp as i32;
        }
    }
    agent.stop().await?;
    let _ = std::fs::remove_dir_all(&workdir);
    let missing = expected.iter().filter(|k| !seen.contains(k)).count();
    if missing > 0 || !icmp_seen {
        anyhow::bail!("demo: {missing} generated connections never showed up as flows");
    }
    println!("\ndemo: every generated connection was captured.\n");
    seed_story(&hosts, &args).await?;
    println!("\ndemo: done; namespaces removed.");
    Ok(ExitCode::SUCCESS)
}

const SEED_POLICIES: &str = include_str!("../../../deploy/examples/seed/policies.yaml");
const SEED_CLUSTER: &str = include_str!("../../../deploy/examples/seed/cluster.yaml");

/// The story flowd exists for: a default-deny policy missed the engine's port range. Host A is
/// the engine pod, host B the core pod; nftables in B stands in for the CNI enforcing the
/// policies; flowd on B names the policy and rule behind the drop.
async fn seed_story(hosts: &TwoHosts, args: &DemoArgs) -> anyhow::Result<()> {
    println!("demo: the seed story: engine ({}) -> core ({}) on 7070 and 42001; the policies forgot 42000-43000",
        testbed::HOST_A_V4, testbed::HOST_B_V4);
    let workdir = std::env::temp_dir().join(format!("flowd-demo-seed-{}", std::process::id()));
    std::fs::create_dir_all(&workdir)?;
    let (policies, cluster) = (workdir.join("policies.yaml"), workdir.join("cluster.yaml"));
    std::fs::write(&policies, SEED_POLICIES)?;
    std::fs::write(&cluster, SEED_CLUSTER)?;
    let nft = format!(
        "table inet cni {{\n chain input {{\n  type filter hook input priority 0;\n  ip saddr {} tcp dport 42000-43000 drop\n }}\n}}\n",
        testbed::HOST_A_V4
    );
    hosts
        .b
        .nft(&nft)
        .context("loading the enforcement rules (nftables) in the core's namespace")?;

    let listeners = [7070u16, 42001]
        .iter()
        .map(|port| {
            hosts
                .b
                .run(|| std::net::TcpListener::bind((testbed::HOST_B_V4, *port)))?
                .map_err(anyhow::Error::from)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for listener in listeners {
        std::thread::spawn(move || {
            while let Ok((mut stream, _)) = listener.accept() {
                let _ = std::io::Write::write_all(&mut stream, b"core");
            }
        });
    }
    let config = Config {
        interfaces: vec![testbed::VETH.to_owned()],
        netns: Some(hosts.b.path()),
        socket: workdir.join("flowd.sock"),
        store_path: workdir.join("flows.redb"),
        active_timeout: Duration::from_secs(2),
        unanswered_timeout: Duration::from_millis(500),
        policy_files: vec![policies],
        metadata_files: vec![cluster],
        ui_listen: Some(args.ui_listen),
        ..Config::default()
    };
    config.validate()?;
    let listeners = crate::agent::AgentListeners::bind(&config)
        .await
        .with_context(|| format!("the demo's web UI on {} (--ui-listen)", args.ui_listen))?;
    let ui = listeners
        .ui
        .as_ref()
        .and_then(|ui| ui.tcp_addr())
        .unwrap_or(args.ui_listen);
    let socket = config.socket.clone();
    let agent = RunningAgent::start_on(
        config,
        listeners,
        tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    let mut stream = agent.follow().await?;
    let answered = tokio::task::block_in_place(|| {
        hosts.a.run(|| {
            [7070u16, 42001]
                .iter()
                .map(|port| {
                    let addr = std::net::SocketAddr::from((testbed::HOST_B_V4, *port));
                    (
                        *port,
                        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(800))
                            .is_ok(),
                    )
                })
                .collect::<Vec<_>>()
        })
    })?;
    for (port, ok) in &answered {
        println!(
            "demo: engine -> core:{port} {}",
            if *ok {
                "works"
            } else {
                "fails (the job hangs)"
            }
        );
    }
    println!(
        "demo: `flowd dump --verdict denied -o wide` on the core's node says why:\n\n{}",
        format::WIDE_HEADER
    );
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut denied = None;
    while denied.is_none() {
        let Ok(Ok(Some(response))) = tokio::time::timeout_at(deadline, stream.message()).await
        else {
            break;
        };
        if let Some(pb::get_flows_response::Event::Flow(flow)) = response.event {
            if flow.verdict == pb::Verdict::Denied as i32 {
                println!("{}", format::wide_line(&flow));
                denied = Some(flow);
            }
        }
    }
    let flow = denied.context("the denied connection never showed up")?;
    if let Some(policy) = &flow.policy {
        println!(
            "\ndemo: denied by {} {}/{} (tier {}), rule {}: the kernel said {}",
            policy.kind,
            policy.namespace,
            policy.name,
            policy.tier,
            policy.rule_index,
            flow.drop_reason
        );
    }
    let shown = red_edge(&socket).await?;
    println!(
        "\ndemo: the page shows it as the red edge {shown}:\n\n    http://{ui}/\n\n\
         demo: click the edge for the policy and rule; the page stays up for {} (Ctrl-C ends it)",
        humantime::format_duration(args.ui_for)
    );
    tokio::select! {
        () = tokio::time::sleep(args.ui_for) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    agent.stop().await?;
    let _ = std::fs::remove_dir_all(&workdir);
    Ok(())
}

/// The denied edge from the engine's workload to the core's, as the page reads it (GetGraph),
/// so the URL printed is known to show it.
async fn red_edge(socket: &std::path::Path) -> anyhow::Result<String> {
    let mut client = crate::api::client::connect_unix(socket).await?;
    let graph = client
        .get_graph(pb::GetGraphRequest::default())
        .await
        .context("GetGraph from the demo's agent")?
        .into_inner();
    graph
        .edges
        .iter()
        .find(|e| {
            e.verdict == pb::Verdict::Denied as i32
                && e.source.contains("engine")
                && e.destination.contains("core")
        })
        .map(|e| format!("{} -> {}", e.source, e.destination))
        .context("the graph has no denied edge from the engine to the core")
}
