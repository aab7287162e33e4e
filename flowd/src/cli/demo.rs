//! `flowd demo`: the agent, for real, on two throwaway namespaces with traffic it makes itself.

use std::{collections::HashSet, net::IpAddr, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{format, run};
use crate::{
    api::client,
    config::Config,
    proto::v1 as pb,
    testbed::{self, TwoHosts},
};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Give up waiting for the generated flows after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
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
    let socket = workdir.join("flowd.sock");
    let config = Config {
        interfaces: vec![testbed::VETH.to_owned()],
        netns: Some(hosts.a.path()),
        socket: socket.clone(),
        store_path: workdir.join("flows.redb"),
        active_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    config.validate()?;
    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let agent = tokio::spawn(crate::agent::run(config, shutdown.clone(), move |_| {
        let _ = ready_tx.send(());
    }));
    if ready_rx.await.is_err() {
        // The agent ended before it was ready: its error says why.
        agent.await??;
        anyhow::bail!("the agent stopped before it was ready");
    }
    println!(
        "demo: agent attached to {} in {}",
        testbed::VETH,
        hosts.a.name
    );

    let mut client = client::connect_unix(&socket).await?;
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await?
        .into_inner();

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
    shutdown.cancel();
    agent.await??;
    let _ = std::fs::remove_dir_all(&workdir);
    let missing = expected.iter().filter(|k| !seen.contains(k)).count();
    if missing > 0 || !icmp_seen {
        anyhow::bail!("demo: {missing} generated connections never showed up as flows");
    }
    println!("\ndemo: every generated connection was captured; namespaces removed.");
    Ok(ExitCode::SUCCESS)
}
