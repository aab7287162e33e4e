//! The collectors compared on one veth: none, a trivial tc program (the hook's own cost), flowd,
//! and two libpcap collectors from Debian, pmacctd and softflowd.

use std::{
    collections::HashMap,
    os::fd::OwnedFd,
    path::PathBuf,
    process::{Child, Stdio},
};

use super::super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Collector {
    Ceiling,
    TrivialTc,
    Flowd,
    Pmacctd,
    Softflowd,
}

/// The name the trivial program is loaded under, so bpf_stats can find it.
pub(super) const TRIVIAL_NAME: &str = "trivial_tc";

impl Collector {
    /// The ceiling first: every ratio divides by it.
    pub(super) const ALL: [Collector; 5] = [
        Collector::Ceiling,
        Collector::TrivialTc,
        Collector::Flowd,
        Collector::Pmacctd,
        Collector::Softflowd,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Collector::Ceiling => "nothing attached",
            Collector::TrivialTc => "trivial tc program",
            Collector::Flowd => "flowd",
            Collector::Pmacctd => "pmacctd (libpcap)",
            Collector::Softflowd => "softflowd (libpcap)",
        }
    }

    pub(super) fn has_process(self) -> bool {
        matches!(
            self,
            Collector::Flowd | Collector::Pmacctd | Collector::Softflowd
        )
    }

    pub(super) fn target_tcp(self) -> &'static str {
        if self == Collector::Flowd {
            ">= 0.97, above pmacctd and softflowd"
        } else {
            "-"
        }
    }

    pub(super) fn target_udp(self) -> &'static str {
        if self == Collector::Flowd {
            ">= 0.92, above pmacctd and softflowd"
        } else {
            "-"
        }
    }
}

/// A collector attached to host A's veth0 until `stop`.
pub(super) struct Running {
    process: Option<Child>,
    _links: Vec<OwnedFd>,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Running {
    pub(super) fn start(
        runtime: &tokio::runtime::Runtime,
        hosts: &TwoHosts,
        collector: Collector,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("flowd.sock");
        let mut running = Running {
            process: None,
            _links: Vec::new(),
            socket: socket.clone(),
            _dir: dir,
        };
        let dir = running._dir.path().to_owned();
        match collector {
            Collector::Ceiling => {}
            Collector::TrivialTc => running._links = attach_trivial(hosts)?,
            Collector::Flowd => {
                let child = Command::new(env!("CARGO_BIN_EXE_flowd"))
                    .args(["run", "--interface", testbed::VETH, "--log-level", "warn"])
                    .arg("--netns")
                    .arg(hosts.a.path())
                    .arg("--socket")
                    .arg(&socket)
                    .arg("--store-path")
                    .arg(dir.join("flows.redb"))
                    .spawn()
                    .context("starting flowd")?;
                running.process = Some(child);
                runtime.block_on(running.wait_for_agent())?;
            }
            Collector::Pmacctd => {
                let output = dir.join("pmacct.csv");
                let child = in_host_a(hosts, "pmacctd")
                    .args(["-i", testbed::VETH, "-P", "print", "-O", "csv", "-r", "60"])
                    .args(["-c", "src_host,dst_host,src_port,dst_port,proto", "-o"])
                    .arg(&output)
                    .spawn()
                    .context("starting pmacctd (`cargo xtask setup` installs it)")?;
                running.process = Some(child);
                running.wait_for_capture_socket()?;
            }
            Collector::Softflowd => {
                // NetFlow goes to host A's own loopback, where nothing listens.
                let child = in_host_a(hosts, "softflowd")
                    .args(["-i", testbed::VETH, "-n", "127.0.0.1:9995", "-d", "-p"])
                    .arg(dir.join("softflowd.pid"))
                    .arg("-c")
                    .arg(dir.join("softflowd.ctl"))
                    .spawn()
                    .context("starting softflowd (`cargo xtask setup` installs it)")?;
                running.process = Some(child);
                running.wait_for_capture_socket()?;
            }
        }
        Ok(running)
    }

    /// The agent's socket is bound before its programs attach; the first answer comes after.
    async fn wait_for_agent(&mut self) -> anyhow::Result<()> {
        loop {
            if let Ok(mut client) = client::connect_unix(&self.socket).await {
                if client.get_status(pb::GetStatusRequest {}).await.is_ok() {
                    return Ok(());
                }
            }
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.process {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("the collector exited early: {status}");
            }
        }
        Ok(())
    }

    /// A libpcap collector is capturing once one of its sockets is a packet socket on the
    /// interface: the kernel lists those in the process's /proc/PID/net/packet.
    fn wait_for_capture_socket(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = self.pid().context("no process")?;
        loop {
            if capturing(pid).unwrap_or(false) {
                return Ok(());
            }
            self.check_alive()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "the collector opened no packet socket within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// CPU time of the collector and its child processes (pmacctd's plugins are children).
    pub(super) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let Some(pid) = self.pid() else {
            return Ok(0.0);
        };
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
        let mut total = 0u64;
        for entry in std::fs::read_dir("/proc")? {
            let Ok(stat) = std::fs::read_to_string(entry?.path().join("stat")) else {
                continue;
            };
            // Fields after the command name, which is in parentheses and may hold spaces.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let own: u32 = head
                .split('(')
                .next()
                .unwrap_or("")
                .trim()
                .parse()
                .unwrap_or(0);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let parent: u32 = fields.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            if own == pid || parent == pid {
                let user: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
                let system: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
                total += user + system;
            }
        }
        Ok(total as f64 / ticks)
    }

    /// Connection-end records flowd stored for connections to `port`, once it has reported
    /// `expected` of them or stopped reporting more for five seconds.
    pub(super) fn reported_connections(
        &self,
        runtime: &tokio::runtime::Runtime,
        port: u16,
        expected: u64,
    ) -> anyhow::Result<u64> {
        runtime.block_on(async {
            let mut client = client::connect_unix(&self.socket).await?;
            let mut best = 0;
            let mut last_progress = Instant::now();
            loop {
                let request = pb::GetFlowsRequest {
                    after_cursor: Some(0),
                    allow: vec![pb::FlowFilter {
                        port: vec![u32::from(port)],
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                let mut stream = client.get_flows(request).await?.into_inner();
                let mut ended = 0;
                while let Some(response) = stream.message().await? {
                    if let Some(pb::get_flows_response::Event::Flow(flow)) = response.event {
                        if flow.report_reason == pb::ReportReason::ConnectionEnd as i32 {
                            ended += 1;
                        }
                    }
                }
                if ended > best {
                    best = ended;
                    last_progress = Instant::now();
                }
                if best >= expected || last_progress.elapsed() > Duration::from_secs(5) {
                    if best < expected {
                        let status = client.get_status(pb::GetStatusRequest {}).await?;
                        let status = status.into_inner();
                        eprintln!(
                            "bench: flowd reported {best} of {expected} connections; \
                             counters {:?}, lost {:?}",
                            status.counters, status.lost
                        );
                    }
                    return Ok(best);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }

    pub(super) fn stop(mut self) {
        if let Some(child) = &mut self.process {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `ip netns exec` execs the tool, so the child's pid is the tool's. Fine for these tools: they
/// need no mounts that `ip netns exec` remounts (flowd does, and enters namespaces itself).
fn in_host_a(hosts: &TwoHosts, tool: &str) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &hosts.a.name, tool])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn capturing(pid: u32) -> anyhow::Result<bool> {
    let packet_sockets = std::fs::read_to_string(format!("/proc/{pid}/net/packet"))?;
    let inodes: Vec<&str> = packet_sockets
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let target = std::fs::read_link(fd?.path())?;
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            if inodes.contains(&inode) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The trivial program on both hooks of host A's veth0, through tcx links like flowd's.
fn attach_trivial(hosts: &TwoHosts) -> anyhow::Result<Vec<OwnedFd>> {
    let program = testbed::load_raw_tc_program(-1, TRIVIAL_NAME)?;
    let links = hosts.a.run(|| -> anyhow::Result<Vec<OwnedFd>> {
        let index = nix::net::if_::if_nametoindex(testbed::VETH)?;
        Ok(vec![
            testbed::attach_tcx_last(&program, index, true)?,
            testbed::attach_tcx_last(&program, index, false)?,
        ])
    })??;
    Ok(links)
}

/// (run count, run time in ns) of every loaded program of flowd's and the trivial one, by name.
pub(super) fn bpf_programs() -> anyhow::Result<HashMap<String, (u64, u64)>> {
    let mut programs: HashMap<String, (u64, u64)> = HashMap::new();
    for info in aya::programs::loaded_programs() {
        let info = info?;
        let Some(name) = info.name_as_str() else {
            continue;
        };
        if name.starts_with("flowd_") || name == TRIVIAL_NAME {
            let entry = programs.entry(name.to_owned()).or_default();
            entry.0 += info.run_count();
            entry.1 += info.run_time().as_nanos() as u64;
        }
    }
    Ok(programs)
}
