//! The three loads: iperf3 TCP bulk, iperf3 64-byte UDP at full rate, and new TCP connections
//! as fast as two client threads can make them. Servers in host A on CPU 1, clients in host B
//! on CPU 0, so the sender and the receiver never share a core.

use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddrV4, TcpListener},
    process::Stdio,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use super::super::*;

const SERVER_CPU: &str = "1";
const CLIENT_CPU: &str = "0";
const IPERF_PORT: &str = "5201";

pub(super) fn check_tools() -> anyhow::Result<()> {
    for (tool, flag) in [("iperf3", "--version"), ("taskset", "--version")] {
        let ok = Command::new(tool)
            .arg(flag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        anyhow::ensure!(
            ok,
            "the end-to-end benchmark needs `{tool}`; `cargo xtask setup` installs it"
        );
    }
    Ok(())
}

pub(super) struct Traffic<'a> {
    hosts: &'a TwoHosts,
    seconds: u64,
}

/// What the connection generator made.
pub(super) struct Made {
    pub count: u64,
    pub seconds: f64,
    pub server_port: u16,
}

impl<'a> Traffic<'a> {
    pub(super) fn new(hosts: &'a TwoHosts, seconds: u64) -> Self {
        Self { hosts, seconds }
    }

    pub(super) fn tcp_gbps(&self) -> anyhow::Result<f64> {
        let report = self.iperf(&[])?;
        report["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .map(|bits| bits / 1e9)
            .context("iperf3 reported no received bit rate")
    }

    pub(super) fn udp_kpps(&self) -> anyhow::Result<f64> {
        let report = self.iperf(&["-u", "-b", "0", "-l", "64"])?;
        let sum = &report["end"]["sum"];
        let packets = sum["packets"].as_f64().context("iperf3: no packet count")?;
        let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
        let seconds = sum["seconds"].as_f64().context("iperf3: no duration")?;
        Ok((packets - lost) / seconds / 1e3)
    }

    /// One iperf3 run: the server answers one test and exits; the client reports as JSON.
    fn iperf(&self, extra: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts.a.name,
                "taskset",
                "-c",
                SERVER_CPU,
            ])
            .args(["iperf3", "-s", "-1", "-p", IPERF_PORT, "--forceflush"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the iperf3 server")?;
        // Readiness: the server says it listens before it accepts.
        let stdout = server.stdout.take().context("server output")?;
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(line) => {
                    if line?.contains("listening") {
                        break;
                    }
                }
                None => anyhow::bail!("the iperf3 server exited before listening"),
            }
        }
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts.b.name,
                "taskset",
                "-c",
                CLIENT_CPU,
            ])
            .args([
                "iperf3",
                "-c",
                &testbed::HOST_A_V4.to_string(),
                "-p",
                IPERF_PORT,
                "-J",
            ])
            .args(["-t", &self.seconds.to_string()])
            .args(extra)
            .output()
            .context("running the iperf3 client")?;
        let _ = server.wait();
        anyhow::ensure!(
            output.status.success(),
            "iperf3 client failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// New connections from B to A for the run's duration, each closed by the client with a
    /// reset (SO_LINGER 0): no TIME_WAIT, so source ports, and with them 5-tuples, are reused
    /// within the run, the hard case for a per-connection map.
    pub(super) fn connections(&self) -> anyhow::Result<Made> {
        let listener = self.hosts.a.run(|| {
            pin(SERVER_CPU);
            TcpListener::bind((testbed::HOST_A_V4, 0))
        })??;
        let server = SocketAddrV4::new(testbed::HOST_A_V4, listener.local_addr()?.port());
        let done = AtomicBool::new(false);
        let made = AtomicU64::new(0);
        let duration = Duration::from_secs(self.seconds);
        let start = Instant::now();
        let netns_a = self.hosts.a.path();
        std::thread::scope(|scope| -> anyhow::Result<()> {
            // Blocking accepts: a spinning server would take the CPU the stack needs.
            let accepting = scope.spawn(|| {
                netns::run_in(Some(&netns_a), || {
                    pin(SERVER_CPU);
                    while !done.load(Ordering::Relaxed) {
                        drop(listener.accept()?);
                    }
                    Ok::<(), std::io::Error>(())
                })
            });
            let clients: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        self.hosts.b.run(|| {
                            pin(CLIENT_CPU);
                            while start.elapsed() < duration {
                                if connect_and_reset(server) {
                                    made.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        })
                    })
                })
                .collect();
            for client in clients {
                client
                    .join()
                    .map_err(|_| anyhow::anyhow!("client panicked"))??;
            }
            done.store(true, Ordering::Relaxed);
            // One more connection wakes the server to see it is done; not counted.
            self.hosts.b.run(|| connect_and_reset(server))?;
            accepting
                .join()
                .map_err(|_| anyhow::anyhow!("server panicked"))???;
            Ok(())
        })?;
        Ok(Made {
            count: made.load(Ordering::Relaxed),
            seconds: start.elapsed().as_secs_f64(),
            server_port: server.port(),
        })
    }
}

fn pin(cpu: &str) {
    let mut set = nix::sched::CpuSet::new();
    if let Ok(cpu) = cpu.parse() {
        if set.set(cpu).is_ok() {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
        }
    }
}

/// Whether a connection went on the wire: established, or answered with a reset or nothing (a
/// full backlog). A collector sees those too; a connect refused locally never left the host.
fn connect_and_reset(server: SocketAddrV4) -> bool {
    use nix::errno::Errno;
    match testbed::connect_and_reset(None, server) {
        Ok(()) => true,
        Err(Errno::ECONNREFUSED | Errno::ECONNRESET | Errno::ETIMEDOUT) => true,
        Err(_) => false,
    }
}

/// Packets through host A's veth0 both ways, from the kernel's interface counters.
pub(super) fn veth_packets(hosts: &TwoHosts) -> anyhow::Result<u64> {
    let table = hosts
        .a
        .run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))??;
    let line = table
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{}:", testbed::VETH)))
        .context("veth0 in /proc/net/dev")?;
    let fields: Vec<u64> = line
        .split_once(':')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // Receive packets are the second field, transmit packets the tenth.
    Ok(fields.get(1).copied().unwrap_or(0) + fields.get(9).copied().unwrap_or(0))
}
