//! Local processes and sockets' cgroups on their flows, host-network pods named by cgroup.

use super::{common::*, *};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_processes_are_named_on_their_flows() {
    if !privileged("local_processes_are_named_on_their_flows") {
        return;
    }
    let hosts = TwoHosts::create("proc").expect("testbed");
    let agent = agent_on(
        &hosts,
        &["--active-timeout", "1s", "--sweep-interval", "200ms"],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    // A server in B, and a client process of its own in A (not this test's threads).
    let (port, server) = sink_in_b(&hosts);
    let script = format!(
        "import socket; s = socket.create_connection(('198.18.0.2', {port})); \
         s.sendall(b'x' * 1000); print(s.getsockname()[1]); s.close()"
    );
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", &hosts.a.name, "python3", "-c", &script])
        .output()
        .expect("python3 client");
    let conn = connection_of_client(&mut stream, &output, server).await;
    let process = conn
        .last()
        .process
        .clone()
        .expect("the flow names its process");
    assert!(process.command.starts_with("python3"), "{process:?}");
    assert!(process.pid > 0 && process.cgroup_id > 0, "{process:?}");
    assert!(agent.terminate().success());
}

/// On a node, a pod's sockets are in its own namespace, at the far end of the veth flowd is
/// attached to: with no local socket for a connection, the tc program looks it up in the
/// veth peer's namespace, so the pod's process is named (as a guess a local socket would win
/// over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_behind_a_veth_is_named_when_no_local_socket_is() {
    if !privileged("a_process_behind_a_veth_is_named_when_no_local_socket_is") {
        return;
    }
    let hosts = TwoHosts::create("far").expect("testbed");
    let agent = agent_on(
        &hosts,
        &["--active-timeout", "1s", "--sweep-interval", "200ms"],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    // Datagrams from B to a port nothing listens on in A: A has no socket for them.
    let (mut sender, port) = started(
        std::process::Command::new("ip")
            .args(["netns", "exec", &hosts.b.name, "python3", "-c"])
            .arg(
                "import socket, sys, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 s.bind(('198.18.0.2', 0))\nprint(s.getsockname()[1], flush=True)\n\
                 for _ in range(50):\n    s.sendto(b'x' * 100, ('198.18.0.1', 9))\n    time.sleep(0.05)\n\
                 sys.stdin.read()\n",
            ),
    );
    let sender_port: u16 = port.parse().expect("the sender prints its port");
    let records = records_once_a_process_is_named(&mut stream, sender_port).await;
    let _ = sender.kill();
    let _ = sender.wait();
    let process = records
        .iter()
        .find_map(|f| f.process.clone())
        .expect("the far process is named");
    assert!(process.command.starts_with("python3"), "{process:?}");
    assert_eq!(process.pid, sender.id(), "{process:?}");
    assert!(agent.terminate().success());
}

/// A server's accepted sockets are created in softirq context, where no process runs: they carry
/// the listener's storage, which the kernel clones into them, and the tc program finds the
/// receiving socket with the kernel's own lookup on ingress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_is_named_on_the_connections_it_accepts() {
    if !privileged("a_server_is_named_on_the_connections_it_accepts") {
        return;
    }
    let hosts = TwoHosts::create("accept").expect("testbed");
    let agent = agent_on(
        &hosts,
        &["--active-timeout", "1s", "--sweep-interval", "200ms"],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let (mut server, port) = started(
        std::process::Command::new("ip")
            .args(["netns", "exec", &hosts.a.name, "python3", "-c"])
            .arg(
                "import socket\ns = socket.socket()\ns.bind(('198.18.0.1', 0))\ns.listen()\n\
                 print(s.getsockname()[1], flush=True)\nc, _ = s.accept()\nwhile c.recv(65536): pass\n",
            ),
    );
    let port: u16 = port.parse().expect("the server prints its port");
    let client_port = hosts
        .b
        .run(|| {
            let mut connection = std::net::TcpStream::connect((testbed::HOST_A_V4, port))?;
            std::io::Write::write_all(&mut connection, &[7u8; 1000])?;
            connection.local_addr().map(|a| a.port())
        })
        .expect("enter B")
        .expect("connect from B");
    let records = records_once_a_process_is_named(&mut stream, client_port).await;
    let _ = server.kill();
    let _ = server.wait();
    let process = records
        .iter()
        .find_map(|f| f.process.clone())
        .expect("a process");
    assert!(process.command.starts_with("python3"), "{process:?}");
    assert_eq!(
        process.pid,
        server.id(),
        "the server's own pid: {process:?}"
    );
    assert!(process.cgroup_id > 0, "{process:?}");
    assert!(agent.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_older_than_the_agent_carry_their_sockets_cgroup() {
    if !privileged("connections_older_than_the_agent_carry_their_sockets_cgroup") {
        return;
    }
    use std::os::unix::fs::MetadataExt as _;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = flowd::host::cgroup2_root(&mountinfo).expect("cgroup v2 mounted");
    let parent = root.join(format!("flowd-test-owner-{}", std::process::id()));
    let (real, decoy) = (parent.join("real"), parent.join("decoy"));
    std::fs::create_dir_all(&real).unwrap();
    std::fs::create_dir_all(&decoy).unwrap();
    let mut cleanup = Cleanup::dirs(vec![parent.clone(), real.clone(), decoy.clone()]);
    let real_id = std::fs::metadata(&real).unwrap().ino();

    // Server and connection exist before the agent: no socket hook saw the bind or the
    // connect, so only the packets themselves can tell whose socket this is.
    let hosts = TwoHosts::create("owner").expect("testbed");
    let (server, port) = python_in(
        &hosts.a.name,
        &real,
        "import socket\ns = socket.socket()\ns.bind(('198.18.0.1', 0))\ns.listen()\n\
         print(s.getsockname()[1], flush=True)\nc, _ = s.accept()\nwhile c.recv(65536): pass\n",
    );
    cleanup.children.push(server);
    let port: u16 = port.parse().expect("the server prints its port");
    let mut connection = hosts
        .b
        .run(|| std::net::TcpStream::connect((testbed::HOST_A_V4, port)))
        .expect("enter B")
        .expect("connect before the agent starts");
    let client_port = connection.local_addr().unwrap().port();

    let agent = agent_on(
        &hosts,
        &["--active-timeout", "1s", "--sweep-interval", "200ms"],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    // A decoy in B binds the same port while the agent watches: by bound port alone, without
    // its namespace, it would look like the owner of connections to that port.
    let (decoy_process, ready) = python_in(
        &hosts.b.name,
        &decoy,
        &format!(
            "import socket, sys\ns = socket.socket()\ns.bind(('198.18.0.2', {port}))\ns.listen()\n\
             print('bound', flush=True)\nsys.stdin.read()\n"
        ),
    );
    cleanup.children.push(decoy_process);
    assert_eq!(ready, "bound");
    std::io::Write::write_all(&mut connection, &[7u8; 1000]).unwrap();
    drop(connection);

    let records = records_once_a_process_is_named(&mut stream, client_port).await;
    let process = records
        .iter()
        .rev()
        .find_map(|f| f.process.clone())
        .expect("a process");
    assert_eq!(
        process.cgroup_id, real_id,
        "the receiving socket's own cgroup, not the decoy's: {process:?}"
    );
    assert!(agent.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_network_pod_is_named_from_its_cgroup() {
    if !privileged("a_host_network_pod_is_named_from_its_cgroup") {
        return;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = flowd::host::cgroup2_root(&mountinfo).expect("cgroup v2 mounted");
    let uid = "6f0e3c1a-2b4d-4e5f-8a9b-0c1d2e3f4a5b";
    // A cgroup shaped like kubelet's (cgroupfs driver), under a test-owned parent.
    let parent = root.join(format!("flowd-test-{}", std::process::id()));
    let pod_cgroup = parent.join("kubepods/burstable").join(format!("pod{uid}"));
    std::fs::create_dir_all(&pod_cgroup).expect("create test cgroups");
    let _cleanup = Cleanup::dirs(vec![
        parent.clone(),
        parent.join("kubepods"),
        parent.join("kubepods/burstable"),
        pod_cgroup.clone(),
    ]);

    let hosts = TwoHosts::create("cgpod").expect("testbed");
    let dir = tempfile::tempdir().unwrap();
    let metadata = dir.path().join("pods.yaml");
    std::fs::write(
        &metadata,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: node-exporter-x1, namespace: monitoring, uid: {uid}}}\n\
             spec: {{hostNetwork: true, nodeName: node-1}}\nstatus: {{podIP: 10.0.0.9}}\n"
        ),
    )
    .unwrap();
    let agent = agent_on(
        &hosts,
        &[
            "--active-timeout",
            "1s",
            "--sweep-interval",
            "200ms",
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let (port, server) = sink_in_b(&hosts);
    let script = format!(
        "import socket; s = socket.create_connection(('198.18.0.2', {port})); \
         s.sendall(b'x'); print(s.getsockname()[1]); s.close()"
    );
    let shell = format!(
        "echo $$ > {}/cgroup.procs && exec ip netns exec {} python3 -c \"{script}\"",
        pod_cgroup.display(),
        hosts.a.name
    );
    let output = std::process::Command::new("sh")
        .args(["-c", &shell])
        .output()
        .unwrap();
    let conn = connection_of_client(&mut stream, &output, server).await;
    let source = conn.last().source.clone().unwrap();
    assert_eq!(
        (source.namespace.as_str(), source.name.as_str()),
        ("monitoring", "node-exporter-x1"),
        "the pod is found from the socket's cgroup, not its address"
    );
    assert_eq!(source.ip, "198.18.0.1");
    assert!(agent.terminate().success());
}

/// Test cgroups and the processes in them: the processes are killed first, then the cgroups
/// removed innermost first (a cgroup with members cannot be removed).
struct Cleanup {
    dirs: Vec<std::path::PathBuf>,
    children: Vec<std::process::Child>,
}

impl Cleanup {
    fn dirs(dirs: Vec<std::path::PathBuf>) -> Self {
        Self {
            dirs,
            children: Vec::new(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Starts `script` with python3 in network namespace `netns` and cgroup `cgroup`; returns the
/// child and the first line it prints (its readiness signal).
fn python_in(netns: &str, cgroup: &std::path::Path, script: &str) -> (std::process::Child, String) {
    started(std::process::Command::new("sh").args([
        "-c",
        &format!(
            "echo $$ > {}/cgroup.procs && exec ip netns exec {netns} python3 -c \"$0\"",
            cgroup.display()
        ),
        script,
    ]))
}

/// Starts `command` with its stdin held open (a script may wait on it) and returns the child
/// with the first line it prints, its readiness signal.
fn started(command: &mut std::process::Command) -> (std::process::Child, String) {
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the helper process");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read its first line");
    (child, line.trim().to_owned())
}

/// The records of the flow from `source_port`, once one of them names a process.
async fn records_once_a_process_is_named(
    stream: &mut tonic::Streaming<pb::GetFlowsResponse>,
    source_port: u16,
) -> Vec<pb::Flow> {
    let totals = collect_until(stream, Duration::from_secs(15), |t| {
        t.iter().any(|(id, c)| {
            id.source.port() == source_port && c.records.iter().any(|f| f.process.is_some())
        })
    })
    .await;
    totals
        .into_iter()
        .find(|(id, _)| id.source.port() == source_port)
        .map(|(_, c)| c.records)
        .expect("the flow from that port")
}
