//! A real agent: BPF run time under traffic and memory with many connections.

use super::*;

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

/// The real agent: attached to a veth pair, costs from kernel.bpf_stats under real traffic, and
/// its memory with 100,000 connections in the flow map against an idle agent.
pub(crate) fn agent(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let hosts = TwoHosts::create("bench")?;
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("flowd.sock");
    let netns = hosts.a.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowd"))
        .args([
            "run",
            "--interface",
            testbed::VETH,
            "--flow-map-entries",
            "131072",
        ])
        .args([
            "--active-timeout",
            "60s",
            "--idle-timeout",
            "60s",
            "--log-level",
            "warn",
        ])
        .arg("--netns")
        .arg(&netns)
        .arg("--socket")
        .arg(&socket)
        .arg("--store-path")
        .arg(dir.path().join("flows.redb"))
        .spawn()?;
    let result = runtime.block_on(async {
        let status = |client: &mut pb::flow_service_client::FlowServiceClient<_>| {
            let mut client = client.clone();
            async move {
                client
                    .get_status(pb::GetStatusRequest {})
                    .await
                    .map(|r| r.into_inner())
            }
        };
        // The socket is bound before the programs attach; the first answer comes once they are.
        let mut client = loop {
            if let Ok(mut client) = client::connect_unix(&socket).await {
                if status(&mut client).await.is_ok() {
                    break client;
                }
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("agent exited: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let idle_rss = rss_kib(child.id())?;

        // Real traffic with kernel statistics on.
        let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)?;
        let before = program_stats()?;
        tokio::task::block_in_place(|| -> anyhow::Result<()> {
            testbed::tcp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 20 << 20, 1 << 20)?;
            testbed::udp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 2_000, 200)?;
            Ok(())
        })?;
        let after = program_stats()?;
        drop(stats);
        let (runs, ns) = (after.0 - before.0, after.1 - before.1);

        // 100,000 distinct connections: one datagram to each of 100,000 ports.
        tokio::task::block_in_place(|| -> anyhow::Result<()> {
            let sender = hosts.a.run(|| UdpSocket::bind("198.18.0.1:0"))??;
            for port in 0..100_000u32 {
                let addr =
                    SocketAddr::new(IpAddr::V4(testbed::HOST_B_V4), 1 + (port % 65_000) as u16);
                let source_variant = port / 65_000;
                if source_variant == 0 {
                    sender.send_to(b"x", addr)?;
                } else {
                    let other = hosts.a.run(|| UdpSocket::bind("198.18.0.1:0"))??;
                    other.send_to(b"x", addr)?;
                }
            }
            Ok(())
        })?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let active = loop {
            let s = status(&mut client).await?;
            if s.active_flows >= 100_000 || Instant::now() > deadline {
                break s.active_flows;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let busy_rss = rss_kib(child.id())?;
        Ok::<_, anyhow::Error>(vec![
            row(
                "tc programs under real traffic, bpf_stats (ns/run)",
                format!("{:.1}", ns as f64 / runs.max(1) as f64),
                format!("{runs} runs"),
                1.0,
                "-",
            ),
            row(
                &format!("agent memory, {active} active connections (MiB RSS)"),
                format!("{:.1}", busy_rss as f64 / 1024.0),
                format!("{:.1} (same agent idle)", idle_rss as f64 / 1024.0),
                busy_rss as f64 / idle_rss as f64,
                "< 150",
            ),
        ])
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    result
}

/// Summed (run count, run time ns) of the loaded flowd programs.
fn program_stats() -> anyhow::Result<(u64, u64)> {
    let mut runs = 0;
    let mut ns = 0;
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if matches!(info.name_as_str(), Some("flowd_ingress" | "flowd_egress")) {
            runs += info.run_count();
            ns += info.run_time().as_nanos() as u64;
        }
    }
    Ok((runs, ns))
}
