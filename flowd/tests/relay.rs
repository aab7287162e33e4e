//! `flowd relay` over three real agents, each attached to its own veth pair in namespaces the
//! test creates, with its own node name, socket and loopback TCP listener: the merged stream in
//! time order, `last N` in total, a node that goes away and comes back, a consumer resuming
//! from a token after the relay restarts, and the unchanged CLI through the relay.

mod support;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use flowd::{
    api::{
        client,
        proto::v1::{self as pb, get_flows_response::Event},
    },
    testbed::{self, TwoHosts},
};
use support::{free_port, privileged, run_flowd, AgentProcess, PinPath};

/// One node: its namespaces, its agent and where its history and pinned maps live across
/// restarts. Fields drop in order: the agent, then the pins (unmounted), then the directory.
struct Node {
    agent: Option<AgentProcess>,
    pins: PinPath,
    name: String,
    hosts: TwoHosts,
    listen: SocketAddr,
    state: tempfile::TempDir,
}

impl Node {
    fn start(name: &str) -> Self {
        let hosts = TwoHosts::create(&format!("relay{name}")).expect("test namespaces");
        let state = tempfile::tempdir().expect("state dir");
        let mut node = Self {
            agent: None,
            pins: PinPath::within(state.path()),
            name: name.to_owned(),
            hosts,
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            state,
        };
        node.restart();
        node
    }

    fn restart(&mut self) {
        let run = tempfile::tempdir().expect("run dir");
        let socket = run.path().join("flowd.sock");
        let store = self.state.path().join("flows.redb");
        let netns = self.hosts.a.path();
        let listen = self.listen.to_string();
        let args = [
            "--netns",
            netns.to_str().expect("utf-8"),
            "--interface",
            testbed::VETH,
            "--node",
            &self.name,
            "--listen",
            &listen,
            "--pin-path",
            self.pins.arg(),
            "--active-timeout",
            "1s",
            "--idle-timeout",
            "2s",
            "--watermark-interval",
            "200ms",
        ];
        self.agent = Some(AgentProcess::start_with(run, socket, &store, &args));
    }

    /// SIGKILL: nothing of the agent's own shutdown runs; what the kernel counted meanwhile
    /// stays in the pinned maps for the next agent.
    fn kill(&mut self) {
        self.agent.take().expect("running").kill();
    }

    /// One TCP exchange from A to B in this node's namespaces; its client address.
    fn exchange(&self) -> SocketAddr {
        testbed::tcp_exchange(&self.hosts, testbed::HOST_B_V4.into(), 300, 700)
            .expect("TCP exchange")
            .client
    }
}

struct Relay {
    child: Child,
    addr: SocketAddr,
}

impl Relay {
    fn start(nodes: &[Node], addr: SocketAddr) -> Self {
        let mut command = Command::new(support::flowd_binary());
        command.args([
            "relay",
            "--listen",
            &addr.to_string(),
            "--connect-timeout",
            "1s",
            "--retry-max",
            "500ms",
            "--checkpoint-interval",
            "200ms",
        ]);
        for node in nodes {
            command.arg("--peer").arg(node.listen.to_string());
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flowd relay");
        let rx = support::log_lines(&mut child, "relay");
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("the relay logs that it is ready");
            if line.contains("flowd relay ready") {
                break;
            }
        }
        Self { child, addr }
    }

    async fn client(
        &self,
    ) -> flowd::api::proto::v1::flow_service_client::FlowServiceClient<tonic::transport::Channel>
    {
        client::connect_tcp(self.addr, None)
            .await
            .expect("connect to the relay")
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn recorded_ns(flow: &pb::Flow) -> u64 {
    flow.recorded_time
        .as_ref()
        .map(|t| t.seconds as u64 * 1_000_000_000 + t.nanos as u64)
        .expect("every record carries its recorded time")
}

fn client_of(flow: &pb::Flow) -> Option<SocketAddr> {
    let source = flow.source.as_ref()?;
    Some(SocketAddr::new(source.ip.parse().ok()?, source.port as u16))
}

/// What one consumer read through the relay.
#[derive(Default)]
struct Seen {
    flows: Vec<pb::Flow>,
    states: Vec<(String, pb::NodeState)>,
    tokens: Vec<(usize, String)>,
}

impl Seen {
    fn clients(&self) -> BTreeSet<(String, SocketAddr)> {
        self.flows
            .iter()
            .filter_map(|f| Some((f.node.clone(), client_of(f)?)))
            .collect()
    }

    fn assert_no_record_twice(&self) {
        let mut seen = BTreeSet::new();
        for flow in &self.flows {
            assert!(
                seen.insert((flow.node.clone(), flow.cursor)),
                "record {}#{} delivered twice",
                flow.node,
                flow.cursor
            );
        }
    }

    fn assert_in_time_order(&self) {
        for pair in self.flows.windows(2) {
            assert!(
                recorded_ns(&pair[0]) <= recorded_ns(&pair[1]),
                "out of time order: {}#{} then {}#{}",
                pair[0].node,
                pair[0].cursor,
                pair[1].node,
                pair[1].cursor
            );
        }
    }
}

/// Reads `stream` until `done` or the timeout.
async fn read_until(
    stream: &mut tonic::Streaming<pb::GetFlowsResponse>,
    seen: &mut Seen,
    timeout: Duration,
    mut done: impl FnMut(&Seen) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(seen) {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(message))) => match message.event {
                Some(Event::Flow(flow)) => seen.flows.push(flow),
                Some(Event::NodeStatus(node)) => seen.states.push((
                    node.node,
                    pb::NodeState::try_from(node.state).unwrap_or_default(),
                )),
                Some(Event::Checkpoint(checkpoint)) => seen
                    .tokens
                    .push((seen.flows.len(), checkpoint.resume_token)),
                _ => {}
            },
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
        }
    }
}

/// Every record of every node, read from each agent directly: (recorded time, node, cursor).
async fn histories(nodes: &[Node]) -> BTreeSet<(u64, String, u64)> {
    let mut all = BTreeSet::new();
    for node in nodes {
        let mut direct = client::connect_tcp(node.listen, None).await.expect("agent");
        let mut history = direct
            .get_flows(pb::GetFlowsRequest {
                last: 1 << 20,
                ..Default::default()
            })
            .await
            .expect("history")
            .into_inner();
        while let Some(message) = history.message().await.expect("history stream") {
            if let Some(Event::Flow(flow)) = message.event {
                all.insert((recorded_ns(&flow), flow.node.clone(), flow.cursor));
            }
        }
    }
    all
}

/// Reads until every (node, client) of `expected` arrived; fails naming the ones that did not.
async fn read_all(
    stream: &mut tonic::Streaming<pb::GetFlowsResponse>,
    seen: &mut Seen,
    expected: &BTreeSet<(String, SocketAddr)>,
    what: &str,
) {
    read_until(stream, seen, Duration::from_secs(30), |s| {
        expected.is_subset(&s.clients())
    })
    .await;
    let clients = seen.clients();
    assert!(
        expected.is_subset(&clients),
        "{what}: missing {:?}",
        expected.difference(&clients).collect::<Vec<_>>()
    );
}

fn follow_all() -> pb::GetFlowsRequest {
    pb::GetFlowsRequest {
        follow: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_merge_in_time_order_and_last_counts_in_total() {
    if !privileged("three_nodes_merge_in_time_order_and_last_counts_in_total") {
        return;
    }
    let nodes: Vec<Node> = ["alpha", "bravo", "charlie"].map(Node::start).into();
    let relay = Relay::start(&nodes, SocketAddr::from(([127, 0, 0, 1], free_port())));
    let mut client = relay.client().await;
    let mut stream = client
        .get_flows(follow_all())
        .await
        .expect("GetFlows")
        .into_inner();
    let mut expected = BTreeSet::new();
    for _round in 0..3 {
        for node in &nodes {
            let client = tokio::task::block_in_place(|| node.exchange());
            expected.insert((node.name.clone(), client));
        }
    }
    let mut seen = Seen::default();
    read_all(
        &mut stream,
        &mut seen,
        &expected,
        "every node's connections arrive",
    )
    .await;
    seen.assert_in_time_order();
    seen.assert_no_record_twice();
    let connected: BTreeSet<&str> = seen
        .states
        .iter()
        .filter(|(_, state)| *state == pb::NodeState::Connected)
        .map(|(node, _)| node.as_str())
        .collect();
    assert_eq!(
        connected,
        ["alpha", "bravo", "charlie"].into_iter().collect()
    );

    // last N is N in total: the N latest of all three histories, oldest first. Records keep
    // coming (active and idle timeouts), so the answer is checked against the histories read
    // before and after it: nothing that existed before and is newer than its oldest is left out.
    let before = histories(&nodes).await;
    let mut last = client
        .get_flows(pb::GetFlowsRequest {
            last: 5,
            ..Default::default()
        })
        .await
        .expect("last 5")
        .into_inner();
    let mut seen_last = Seen::default();
    read_until(&mut last, &mut seen_last, Duration::from_secs(20), |_| {
        false
    })
    .await;
    let after = histories(&nodes).await;
    let got: Vec<(u64, String, u64)> = seen_last
        .flows
        .iter()
        .map(|f| (recorded_ns(f), f.node.clone(), f.cursor))
        .collect();
    assert_eq!(got.len(), 5, "5 in total, not 5 per node: {got:?}");
    assert!(
        got.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {got:?}"
    );
    for record in &got {
        assert!(
            after.contains(record),
            "{record:?} is in its node's history"
        );
    }
    let oldest = &got[0];
    for record in before.iter().filter(|r| *r > oldest) {
        assert!(
            got.contains(record),
            "{record:?} existed before the call and is newer than {oldest:?}, yet is missing: {got:?}"
        );
    }
    assert!(
        !seen_last.tokens.is_empty(),
        "a finished stream ends with a checkpoint"
    );

    // The whole cluster's history at once: three node streams racing each other, interleaved
    // in time round by round, come out as one stream in time order.
    let mut everything = client
        .get_flows(pb::GetFlowsRequest {
            last: 1 << 20,
            ..Default::default()
        })
        .await
        .expect("all history")
        .into_inner();
    let mut seen_all = Seen::default();
    read_until(
        &mut everything,
        &mut seen_all,
        Duration::from_secs(20),
        |_| false,
    )
    .await;
    seen_all.assert_in_time_order();
    seen_all.assert_no_record_twice();
    let delivered: BTreeSet<(u64, String, u64)> = seen_all
        .flows
        .iter()
        .map(|f| (recorded_ns(f), f.node.clone(), f.cursor))
        .collect();
    assert!(
        after.is_subset(&delivered),
        "every stored record, once: missing {:?}",
        after.difference(&delivered).collect::<Vec<_>>()
    );

    // The CLI a user types, unchanged, through the relay.
    let relay_addr = relay.addr.to_string();
    let (code, output) = run_flowd(&["dump", "--server", &relay_addr, "--last", "5", "-o", "json"]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        output.lines().filter(|l| l.contains("\"cursor\"")).count(),
        5,
        "{output}"
    );
    let (code, output) = run_flowd(&["status", "--server", &relay_addr]);
    assert_eq!(code, 0, "{output}");
    for node in ["alpha", "bravo", "charlie"] {
        assert!(
            output.contains(&format!("node {node}")) && output.contains("connected"),
            "{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_is_caught_up_none_twice() {
    if !privileged("a_killed_node_is_caught_up_none_twice") {
        return;
    }
    let mut nodes: Vec<Node> = ["delta", "echo", "foxtrot"].map(Node::start).into();
    let relay = Relay::start(&nodes, SocketAddr::from(([127, 0, 0, 1], free_port())));
    let mut client = relay.client().await;
    let mut stream = client
        .get_flows(follow_all())
        .await
        .expect("GetFlows")
        .into_inner();
    let mut seen = Seen::default();
    let mut expected = BTreeSet::new();
    for node in &nodes {
        let client = tokio::task::block_in_place(|| node.exchange());
        expected.insert((node.name.clone(), client));
    }
    read_all(
        &mut stream,
        &mut seen,
        &expected,
        "every node's connections arrive",
    )
    .await;

    // echo is killed with a connection counted in the kernel and not yet reported (it stays in
    // the pinned maps), and the others go on while it is away.
    let last_words = tokio::task::block_in_place(|| nodes[1].exchange());
    expected.insert(("echo".to_owned(), last_words));
    tokio::task::block_in_place(|| nodes[1].kill());
    read_until(&mut stream, &mut seen, Duration::from_secs(20), |s| {
        s.states
            .iter()
            .any(|(node, state)| node == "echo" && *state == pb::NodeState::Unavailable)
    })
    .await;
    assert!(
        seen.states
            .iter()
            .any(|(node, state)| node == "echo" && *state == pb::NodeState::Unavailable),
        "the consumer hears that echo went away: {:?}",
        seen.states
    );
    for node in [&nodes[0], &nodes[2]] {
        let client = tokio::task::block_in_place(|| node.exchange());
        expected.insert((node.name.clone(), client));
    }
    // Traffic while no agent runs on echo: the pinned programs count it.
    let unattended = tokio::task::block_in_place(|| nodes[1].exchange());
    expected.insert(("echo".to_owned(), unattended));
    tokio::task::block_in_place(|| nodes[1].restart());
    let after = tokio::task::block_in_place(|| nodes[1].exchange());
    expected.insert(("echo".to_owned(), after));
    read_all(&mut stream, &mut seen, &expected, "missed flows arrive").await;
    seen.assert_no_record_twice();
    // Every record echo holds arrived: its history, cursor by cursor.
    let mut direct = client::connect_tcp(nodes[1].listen, None)
        .await
        .expect("echo");
    let status = direct
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let delivered = |seen: &Seen| -> BTreeSet<u64> {
        seen.flows
            .iter()
            .filter(|f| f.node == "echo")
            .map(|f| f.cursor)
            .collect()
    };
    // The consumer follows from when it started: records echo stored before (its interfaces'
    // own neighbour discovery as they came up) were never asked for. From the first one it got,
    // none may be missing.
    let first_delivered = delivered(&seen)
        .first()
        .copied()
        .expect("echo's records arrived");
    let held: BTreeSet<u64> =
        (status.first_cursor.max(first_delivered)..=status.last_cursor).collect();
    // Records echo stored after the expected ones were read (a connection's later report) are
    // still on their way through the relay.
    read_until(&mut stream, &mut seen, Duration::from_secs(20), |s| {
        held.is_subset(&delivered(s))
    })
    .await;
    seen.assert_no_record_twice();
    let echo = delivered(&seen);
    assert!(
        held.is_subset(&echo),
        "echo's records not delivered: {:?}",
        held.difference(&echo).collect::<Vec<_>>()
    );
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_resumes_from_its_token_after_the_relay_restarts() {
    if !privileged("a_consumer_resumes_from_its_token_after_the_relay_restarts") {
        return;
    }
    let nodes: Vec<Node> = ["golf", "hotel", "india"].map(Node::start).into();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let relay = Relay::start(&nodes, addr);
    let mut client = relay.client().await;
    let mut stream = client
        .get_flows(follow_all())
        .await
        .expect("GetFlows")
        .into_inner();
    let mut before = BTreeSet::new();
    for node in &nodes {
        let client = tokio::task::block_in_place(|| node.exchange());
        before.insert((node.name.clone(), client));
    }
    let mut seen = Seen::default();
    read_until(&mut stream, &mut seen, Duration::from_secs(30), |s| {
        before.is_subset(&s.clients())
            && s.tokens.last().is_some_and(|(at, _)| *at == s.flows.len())
    })
    .await;
    let (at, token) = seen
        .tokens
        .last()
        .cloned()
        .expect("a checkpoint after the records");
    assert_eq!(at, seen.flows.len(), "the token covers everything read");
    drop(stream);
    relay.stop();

    let mut after = BTreeSet::new();
    for node in &nodes {
        let client = tokio::task::block_in_place(|| node.exchange());
        after.insert((node.name.clone(), client));
    }
    let relay = Relay::start(&nodes, addr);
    let mut client = relay.client().await;
    let mut resumed = client
        .get_flows(pb::GetFlowsRequest {
            follow: true,
            resume_token: token,
            ..Default::default()
        })
        .await
        .expect("GetFlows with a token")
        .into_inner();
    let mut next = Seen::default();
    read_all(
        &mut resumed,
        &mut next,
        &after,
        "what came while no relay ran arrives",
    )
    .await;
    let earlier: BTreeSet<(String, u64)> = seen
        .flows
        .iter()
        .map(|f| (f.node.clone(), f.cursor))
        .collect();
    for flow in &next.flows {
        assert!(
            !earlier.contains(&(flow.node.clone(), flow.cursor)),
            "{}#{} was delivered before the token and again after it",
            flow.node,
            flow.cursor
        );
    }
    let tampered = client
        .get_flows(pb::GetFlowsRequest {
            follow: true,
            resume_token: "r1.not-a-token!".into(),
            ..Default::default()
        })
        .await
        .expect_err("a broken token is refused");
    assert_eq!(tampered.code(), tonic::Code::InvalidArgument);
    assert!(
        tampered.message().contains("resume_token"),
        "{}",
        tampered.message()
    );
}
