//! Shared by the integration tests: privilege gate, a real agent process, flow collection.
#![allow(dead_code)] // each test binary uses its own subset

pub mod export;
pub mod http;
pub mod prometheus;
pub mod tls;

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use flowd::api::{
    client,
    proto::v1::{self as pb, flow_service_client::FlowServiceClient},
};
use tonic::transport::Channel;

/// True when this test may touch the kernel. As root under `cargo xtask test`
/// (FLOWD_REQUIRE_PRIVILEGED=1) a test that cannot run fails instead of skipping.
pub fn privileged(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let required = std::env::var("FLOWD_REQUIRE_PRIVILEGED").as_deref() == Ok("1");
    if root {
        return true;
    }
    assert!(
        !required,
        "{test}: FLOWD_REQUIRE_PRIVILEGED=1 but not running as root"
    );
    eprintln!("SKIPPED {test}: needs root (loads eBPF programs, creates namespaces)");
    false
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn flowd_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flowd"))
}

/// Where one agent pins its maps and links (`--pin-path`); the agent mounts a BPF filesystem
/// there, which is unmounted on drop. Tests never share the host's `/sys/fs/bpf/flowd`.
pub struct PinPath(pub PathBuf);

impl PinPath {
    pub fn within(dir: &Path) -> Self {
        Self(dir.join("bpf"))
    }

    /// A BPF filesystem mounted by the test, as a node provides one to a pod that may not mount.
    pub fn mounted(dir: &Path) -> Self {
        let pins = Self::within(dir);
        std::fs::create_dir_all(&pins.0).expect("create the pin directory");
        nix::mount::mount(
            Some("bpf"),
            &pins.0,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount a BPF filesystem");
        pins
    }

    pub fn arg(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for PinPath {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A `flowd run` child process. Killed on drop if still running.
pub struct AgentProcess {
    child: Child,
    pub socket: PathBuf,
    /// Before `_dir`: unmounted before the directory is removed.
    _pins: Option<PinPath>,
    _dir: tempfile::TempDir,
    log: mpsc::Receiver<String>,
    pub log_lines: Vec<String>,
}

impl AgentProcess {
    /// Starts the agent and waits for its "flowd ready" log line (programs attached, API bound).
    pub fn start(extra_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("flowd.sock");
        let store = dir.path().join("flows.redb");
        Self::start_with(dir, socket, &store, extra_args)
    }

    /// Starts an agent on a given history file (for restart tests), keeping `dir` alive.
    pub fn start_with(
        dir: tempfile::TempDir,
        socket: PathBuf,
        store: &Path,
        extra_args: &[&str],
    ) -> Self {
        Self::launch(Command::new(flowd_binary()), dir, socket, store, extra_args)
    }

    /// Starts the agent through `launcher` (a program and its arguments, which exec the agent
    /// given last), e.g. to enter a namespace and drop capabilities first.
    pub fn start_launched(launcher: &[&str], extra_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("flowd.sock");
        let store = dir.path().join("flows.redb");
        let (program, args) = launcher.split_first().expect("a launcher program");
        let mut command = Command::new(program);
        command.args(args).arg(flowd_binary());
        Self::launch(command, dir, socket, &store, extra_args)
    }

    fn launch(
        mut command: Command,
        dir: tempfile::TempDir,
        socket: PathBuf,
        store: &Path,
        extra_args: &[&str],
    ) -> Self {
        // A test that restarts over pinned state names the path itself, and keeps it.
        let pins = (!extra_args.contains(&"--pin-path")).then(|| PinPath::within(dir.path()));
        command
            .arg("run")
            .arg("--socket")
            .arg(&socket)
            .arg("--store-path")
            .arg(store);
        if let Some(pins) = &pins {
            command.arg("--pin-path").arg(&pins.0);
        }
        let mut child = command
            .args(extra_args)
            .env("FLOWD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flowd run");
        let log = log_lines(&mut child, "agent");
        let mut agent = Self {
            child,
            socket,
            _pins: pins,
            _dir: dir,
            log,
            log_lines: Vec::new(),
        };
        agent.wait_for_log("flowd ready", Duration::from_secs(30));
        agent
    }

    /// Blocks until a log line contains `needle`; panics with the log if the agent exits first.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.log_lines.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "agent never logged {needle:?} (exit: {:?}); log:\n{}",
                    self.child.try_wait(),
                    self.log_lines.join("\n")
                ),
            }
        }
    }

    /// The value of `field` (`addr`, `url`...) on the agent's first log line containing
    /// `message`, waiting for the line if it has not come yet.
    pub fn logged_field(&mut self, message: &str, field: &str) -> String {
        if !self.log_lines.iter().any(|line| line.contains(message)) {
            self.wait_for_log(message, Duration::from_secs(10));
        }
        let prefix = format!("{field}=");
        self.log_lines
            .iter()
            .find(|line| line.contains(message))
            .and_then(|line| line.split(prefix.as_str()).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("the agent logs {message:?} with {field}="))
            .to_owned()
    }

    pub async fn client(&self) -> FlowServiceClient<Channel> {
        client::connect_unix(&self.socket)
            .await
            .expect("connect to the agent")
    }

    /// SIGTERM, then wait for exit.
    pub fn terminate(mut self) -> ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("send SIGTERM");
        self.child.wait().expect("wait for the agent")
    }

    /// SIGKILL: nothing of the agent's own shutdown runs.
    pub fn kill(mut self) {
        self.child.kill().expect("send SIGKILL");
        self.child.wait().expect("wait for the agent");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child's stderr, echoed into the test's output with `tag` and handed over line by line.
/// The pipe is read to its end even once nobody takes the lines, so the child never blocks
/// on a full pipe.
pub fn log_lines(child: &mut Child, tag: &'static str) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{tag}] {line}");
            let _ = tx.send(line);
        }
    });
    lines
}

/// Opens a stream of new flows (follow, no backlog).
pub async fn follow(
    client: &mut FlowServiceClient<Channel>,
) -> tonic::Streaming<pb::GetFlowsResponse> {
    client
        .get_flows(pb::GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .expect("GetFlows")
        .into_inner()
}

/// Runs the flowd binary to completion: exit code and everything it printed. Never a panic.
pub fn run_flowd(args: &[&str]) -> (i32, String) {
    let output = Command::new(flowd_binary())
        .args(args)
        .output()
        .expect("run flowd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("panicked"), "flowd panicked: {text}");
    (output.status.code().unwrap_or(-1), text)
}

/// Connection identity for summing records: protocol, source and destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowId {
    pub protocol: i32,
    pub source: std::net::SocketAddr,
    pub destination: std::net::SocketAddr,
}

/// Per-side sums over every record of one connection.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub request_packets: u64,
    pub request_bytes: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
    pub records: Vec<pb::Flow>,
}

impl Totals {
    pub fn last(&self) -> &pb::Flow {
        self.records.last().expect("at least one record")
    }

    pub fn ended(&self) -> bool {
        self.records
            .iter()
            .any(|f| f.report_reason == pb::ReportReason::ConnectionEnd as i32)
    }
}

pub fn id_of(flow: &pb::Flow) -> Option<FlowId> {
    let addr = |e: &Option<pb::Endpoint>| -> Option<std::net::SocketAddr> {
        let e = e.as_ref()?;
        Some(std::net::SocketAddr::new(
            e.ip.parse().ok()?,
            u16::try_from(e.port).ok()?,
        ))
    };
    Some(FlowId {
        protocol: flow.protocol,
        source: addr(&flow.source)?,
        destination: addr(&flow.destination)?,
    })
}

/// Reads a follow stream, summing records per flow, until `done` holds or `timeout` passes.
pub async fn collect_until(
    stream: &mut tonic::Streaming<pb::GetFlowsResponse>,
    timeout: Duration,
    mut done: impl FnMut(&HashMap<FlowId, Totals>) -> bool,
) -> HashMap<FlowId, Totals> {
    let mut totals: HashMap<FlowId, Totals> = HashMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&totals) {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(pb::GetFlowsResponse {
                event: Some(pb::get_flows_response::Event::Flow(flow)),
            }))) => {
                let Some(id) = id_of(&flow) else { continue };
                let entry = totals.entry(id).or_default();
                let request = flow.request.unwrap_or_default();
                let reply = flow.reply.unwrap_or_default();
                entry.request_packets += request.packets;
                entry.request_bytes += request.bytes;
                entry.reply_packets += reply.packets;
                entry.reply_bytes += reply.bytes;
                entry.records.push(flow);
            }
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
        }
    }
    totals
}
