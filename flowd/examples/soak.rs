//! `cargo xtask soak --minutes N`: a real agent under mixed traffic, interface churn and
//! followers that come and go, killed with SIGKILL half way and restarted over its pinned state.
//! Prints the agent's memory and CPU over time, then checks every generated exchange against
//! the history: records lost beyond what the agents reported lost fail the run.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use flowd::{
    api::client,
    proto::v1 as pb,
    store::{FlowStore, Range, Retention},
    testbed::{self, TwoHosts},
};

struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(flowd: &Path, dir: &Path, netns: &Path) -> anyhow::Result<Self> {
        let socket = dir.join("flowd.sock");
        let mut child = Command::new(flowd)
            .args(["run", "--netns"])
            .arg(netns)
            .arg("--socket")
            .arg(&socket)
            .arg("--store-path")
            .arg(dir.join("flows.redb"))
            .arg("--pin-path")
            .arg(dir.join("bpf"))
            .args(["--active-timeout", "2s", "--idle-timeout", "3s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start flowd")?;
        // The agent says when it is ready; its log is read to the end so it never blocks.
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().context("stderr")?;
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("flowd ready") {
                    let _ = ready_tx.send(());
                } else if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("[agent] {line}");
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(60))
            .context("the agent did not get ready")?;
        Ok(Self { child, socket })
    }

    /// Resident bytes and CPU seconds (user + system) so far.
    fn usage(&self) -> (u64, f64) {
        let pid = self.child.id();
        let rss = std::fs::read_to_string(format!("/proc/{pid}/statm"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 4096;
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let fields: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
                Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        (rss, ticks as f64 / 100.0)
    }
}

async fn lost_by_cause(socket: &Path) -> HashMap<String, u64> {
    match client::connect_unix(socket).await {
        Ok(mut api) => api
            .get_status(pb::GetStatusRequest {})
            .await
            .map(|s| s.into_inner().lost)
            .unwrap_or_default(),
        Err(_) => HashMap::new(),
    }
}

/// A follower that reads a few messages and goes away.
fn brief_follower(socket: PathBuf, messages: usize) {
    tokio::spawn(async move {
        let Ok(mut api) = client::connect_unix(&socket).await else {
            return;
        };
        let Ok(stream) = api
            .get_flows(pb::GetFlowsRequest {
                follow: true,
                ..Default::default()
            })
            .await
        else {
            return;
        };
        let mut stream = stream.into_inner();
        for _ in 0..messages {
            if !matches!(stream.message().await, Ok(Some(_))) {
                break;
            }
        }
    });
}

fn churn(hosts: &TwoHosts, round: usize) {
    let ip = |args: &[String]| {
        let _ = Command::new("ip")
            .arg("-n")
            .arg(&hosts.a.name)
            .args(args)
            .status();
    };
    for i in 0..5 {
        if round > 0 {
            ip(&["link".into(), "del".into(), format!("s{}x{i}", round - 1)]);
        }
        ip(&[
            "link".into(),
            "add".into(),
            format!("s{round}x{i}"),
            "type".into(),
            "veth".into(),
            "peer".into(),
            "name".into(),
            format!("t{round}x{i}"),
        ]);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let minutes: f64 = value("--minutes").unwrap_or("2".into()).parse()?;
    let flowd = PathBuf::from(value("--flowd").context("--flowd PATH is required")?);
    let hosts = TwoHosts::create("soak")?;
    let dir = tempfile::tempdir()?;
    let mut agent = Agent::start(&flowd, dir.path(), &hosts.a.path())?;
    let started = Instant::now();
    let length = Duration::from_secs_f64(minutes * 60.0);
    let mut killed = false;
    let mut expected: HashMap<(SocketAddr, SocketAddr), u64> = HashMap::new();
    let mut reported_lost: HashMap<String, u64> = HashMap::new();
    let (mut last_cpu, mut last_at) = (0.0, Instant::now());
    println!(
        "{:>7}  {:>9}  {:>6}  {:>9}",
        "seconds", "RSS MiB", "CPU %", "exchanges"
    );
    let mut tick = 0usize;
    while started.elapsed() < length {
        tick += 1;
        // Mixed traffic: UDP request/reply of 5 datagrams, and a TCP transfer.
        let exchange = tokio::task::block_in_place(|| {
            testbed::udp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 5, 200)
        })?;
        expected.insert((exchange.client, exchange.server), 10);
        let _ = tokio::task::block_in_place(|| {
            testbed::tcp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 64 * 1024, 1024)
        });
        if tick.is_multiple_of(5) {
            tokio::task::block_in_place(|| churn(&hosts, tick / 5));
        }
        if tick.is_multiple_of(3) {
            brief_follower(agent.socket.clone(), tick % 7);
        }
        if !killed && started.elapsed() >= length / 2 {
            for (cause, n) in lost_by_cause(&agent.socket).await {
                *reported_lost.entry(cause).or_default() += n;
            }
            agent.child.kill()?;
            agent.child.wait()?;
            println!(
                "{:>7}  SIGKILL, restarting over the pinned state",
                started.elapsed().as_secs()
            );
            agent = Agent::start(&flowd, dir.path(), &hosts.a.path())?;
            killed = true;
            last_cpu = 0.0;
        }
        if tick.is_multiple_of(10) {
            let (rss, cpu) = agent.usage();
            let wall = last_at.elapsed().as_secs_f64();
            println!(
                "{:>7}  {:>9.1}  {:>6.1}  {:>9}",
                started.elapsed().as_secs(),
                rss as f64 / (1 << 20) as f64,
                100.0 * (cpu - last_cpu) / wall,
                expected.len()
            );
            (last_cpu, last_at) = (cpu, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (cause, n) in lost_by_cause(&agent.socket).await {
        *reported_lost.entry(cause).or_default() += n;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    if !agent.child.wait()?.success() {
        bail!("the agent did not stop cleanly");
    }

    let store = FlowStore::open(
        &dir.path().join("flows.redb"),
        Retention {
            max_age: Duration::MAX,
            max_bytes: u64::MAX,
        },
        8 << 20,
    )?;
    let mut seen: HashMap<(SocketAddr, SocketAddr), u64> = HashMap::new();
    let mut resume = None;
    loop {
        resume = store.page(Range::AfterCursor(0), resume, |flow| {
            let address = |e: &Option<pb::Endpoint>| -> Option<SocketAddr> {
                let e = e.as_ref()?;
                Some(SocketAddr::new(
                    e.ip.parse().ok()?,
                    u16::try_from(e.port).ok()?,
                ))
            };
            if let (Some(source), Some(destination)) =
                (address(&flow.source), address(&flow.destination))
            {
                let packets =
                    flow.request.map_or(0, |c| c.packets) + flow.reply.map_or(0, |c| c.packets);
                *seen.entry((source, destination)).or_default() += packets;
            }
            std::ops::ControlFlow::Continue(())
        })?;
        if resume.is_none() {
            break;
        }
    }
    let (mut missing, mut extra) = (0u64, 0u64);
    for (flow, packets) in &expected {
        let got = seen.get(flow).copied().unwrap_or(0);
        missing += packets.saturating_sub(got);
        extra += got.saturating_sub(*packets);
    }
    let reported: u64 = reported_lost.values().sum();
    println!(
        "{} exchanges, {} packets expected: {missing} missing, {extra} counted twice; the agents reported {reported} lost {reported_lost:?}; {} records in the history",
        expected.len(),
        expected.values().sum::<u64>(),
        store.len()
    );
    if missing > reported || extra > 0 {
        bail!("records lost or doubled beyond what the agents reported");
    }
    Ok(())
}
