//! Privileged end-to-end tests: a real agent process attached to a veth pair in namespaces the
//! test creates, real TCP/UDP traffic, assertions through the gRPC API and `flowd dump`.

mod support;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use flowd::{
    api::proto::v1 as pb,
    testbed::{self, TwoHosts},
};
use support::{collect_until, privileged, AgentProcess, FlowId, Totals};

const TCP: i32 = pb::Protocol::Tcp as i32;
const UDP: i32 = pb::Protocol::Udp as i32;

fn id(protocol: i32, source: SocketAddr, destination: SocketAddr) -> FlowId {
    FlowId {
        protocol,
        source,
        destination,
    }
}

fn agent_on(hosts: &TwoHosts, extra: &[&str]) -> AgentProcess {
    let netns = hosts.a.path();
    let mut args = vec![
        "--netns",
        netns.to_str().expect("utf-8 path"),
        "--interface",
        testbed::VETH,
    ];
    args.extend_from_slice(extra);
    AgentProcess::start(&args)
}

/// A TCP server in B that reads one connection to its end; returns its port and thread.
fn sink_in_b(hosts: &TwoHosts) -> (u16, std::thread::JoinHandle<()>) {
    let listener = hosts
        .b
        .run(|| std::net::TcpListener::bind("198.18.0.2:0"))
        .expect("enter B")
        .expect("bind in B");
    let port = listener.local_addr().expect("bound").port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("the client connects");
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut buf).expect("read to the end");
    });
    (port, server)
}

/// The connection opened by a client that printed its own source port, once its server is done.
async fn connection_of_client(
    stream: &mut tonic::Streaming<pb::GetFlowsResponse>,
    client: &std::process::Output,
    server: std::thread::JoinHandle<()>,
) -> Totals {
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    server.join().expect("the server thread");
    let client_port: u16 = String::from_utf8_lossy(&client.stdout)
        .trim()
        .parse()
        .expect("the client prints its source port");
    let mut totals = collect_until(stream, Duration::from_secs(10), |t| {
        t.keys().any(|id| id.source.port() == client_port)
    })
    .await;
    let id = totals
        .keys()
        .find(|id| id.source.port() == client_port)
        .cloned()
        .expect("the client's connection");
    totals.remove(&id).expect("found above")
}

fn ip_header_len(server: IpAddr) -> u64 {
    if server.is_ipv4() {
        20
    } else {
        40
    }
}

/// Bytes must be the payload plus, per packet, an IP header and a TCP header of 20 to 60 bytes.
fn assert_tcp_side(packets: u64, bytes: u64, payload: usize, ip_header: u64, what: &str) {
    let payload = payload as u64;
    assert!(
        packets >= 3,
        "{what}: SYN, data and FIN at least, got {packets}"
    );
    let overhead = bytes
        .checked_sub(payload)
        .unwrap_or_else(|| panic!("{what}: {bytes} bytes cannot carry a {payload}-byte payload"));
    let (min, max) = (packets * (ip_header + 20), packets * (ip_header + 60));
    assert!(
        (min..=max).contains(&overhead),
        "{what}: {overhead} header bytes over {packets} packets, expected {min}..={max}"
    );
}

fn side_flags(totals: &Totals, request: bool) -> pb::TcpFlags {
    let side = if request {
        &totals.last().request
    } else {
        &totals.last().reply
    };
    side.as_ref().and_then(|s| s.tcp_flags).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_udp_connections_are_counted_for_ipv4_and_ipv6() {
    if !privileged("tcp_and_udp_connections_are_counted_for_ipv4_and_ipv6") {
        return;
    }
    let hosts = TwoHosts::create("e2e").expect("testbed");
    let agent = agent_on(
        &hosts,
        &["--active-timeout", "1s", "--sweep-interval", "200ms"],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;

    const REQUEST: usize = 12_345;
    const RESPONSE: usize = 54_321;
    const DATAGRAMS: u64 = 7;
    const DATAGRAM: u64 = 300;
    let mut expected = Vec::new();
    for server in [
        IpAddr::V4(testbed::HOST_B_V4),
        IpAddr::V6(testbed::HOST_B_V6),
    ] {
        let (tcp, udp) = tokio::task::block_in_place(|| {
            (
                testbed::tcp_exchange(&hosts, server, REQUEST, RESPONSE).expect("tcp"),
                testbed::udp_exchange(&hosts, server, DATAGRAMS as usize, DATAGRAM as usize)
                    .expect("udp"),
            )
        });
        expected.push((server, tcp, udp));
    }
    let udp_bytes = |server: IpAddr| DATAGRAMS * (DATAGRAM + 8 + ip_header_len(server));

    let totals = collect_until(&mut stream, Duration::from_secs(20), |t| {
        expected.iter().all(|(_, tcp, udp)| {
            t.get(&id(TCP, tcp.client, tcp.server))
                .is_some_and(Totals::ended)
                && t.get(&id(UDP, udp.client, udp.server))
                    .is_some_and(|x| x.reply_packets >= DATAGRAMS)
        })
    })
    .await;

    for (server, tcp, udp) in &expected {
        let family = if server.is_ipv4() { "IPv4" } else { "IPv6" };
        let conn = totals
            .get(&id(TCP, tcp.client, tcp.server))
            .unwrap_or_else(|| panic!("{family} TCP connection missing; saw {:?}", totals.keys()));
        let header = ip_header_len(*server);
        assert_tcp_side(
            conn.request_packets,
            conn.request_bytes,
            REQUEST,
            header,
            family,
        );
        assert_tcp_side(
            conn.reply_packets,
            conn.reply_bytes,
            RESPONSE,
            header,
            family,
        );
        let (request_flags, reply_flags) = (side_flags(conn, true), side_flags(conn, false));
        assert!(
            request_flags.syn && request_flags.fin && !request_flags.rst,
            "{request_flags:?}"
        );
        assert!(
            reply_flags.syn && reply_flags.ack && reply_flags.fin,
            "{reply_flags:?}"
        );
        let last = conn.last();
        assert_eq!(
            last.outcome,
            pb::Outcome::Closed as i32,
            "{family} TCP outcome"
        );
        assert_eq!(last.verdict, pb::Verdict::Forwarded as i32);
        assert!(last.initiator_certain, "a SYN was seen");
        assert_eq!(
            last.request.as_ref().map(|r| r.direction),
            Some(pb::TrafficDirection::Egress as i32),
            "the client's packets leave host A's veth"
        );

        let conn = totals
            .get(&id(UDP, udp.client, udp.server))
            .unwrap_or_else(|| panic!("{family} UDP flow missing"));
        assert_eq!(
            (conn.request_packets, conn.request_bytes),
            (DATAGRAMS, udp_bytes(*server)),
            "{family} UDP request: exact counts"
        );
        assert_eq!(
            (conn.reply_packets, conn.reply_bytes),
            (DATAGRAMS, udp_bytes(*server)),
            "{family} UDP answers: exact counts"
        );
        let last = conn.last();
        assert_eq!(last.ip_version, if server.is_ipv4() { 4 } else { 6 });
        assert_eq!(last.outcome, pb::Outcome::Answered as i32);
        let interface = last.interface.as_ref().expect("interface");
        assert_eq!(interface.name, testbed::VETH);
        assert_ne!(interface.netns_cookie, 0);
    }

    // The same flows through the CLI, as JSON lines with textual addresses.
    let output = std::process::Command::new(support::flowd_binary())
        .args(["dump", "-o", "json", "--last", "1000", "--socket"])
        .arg(agent.socket_path())
        .output()
        .expect("flowd dump");
    assert!(
        output.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    let (_, tcp_v4, _) = &expected[0];
    let (_, _, udp_v6) = &expected[1];
    assert!(lines.iter().any(|f| f["source"]["ip"] == "198.18.0.1"
        && f["source"]["port"] == u64::from(tcp_v4.client.port())
        && f["protocol"] == "PROTOCOL_TCP"
        && f["outcome"] == "OUTCOME_CLOSED"));
    assert!(lines.iter().any(|f| f["source"]["ip"] == "fd00:f10d::1"
        && f["destination"]["ip"] == "fd00:f10d::2"
        && f["source"]["port"] == u64::from(udp_v6.client.port())));
    assert!(lines
        .iter()
        .all(|f| f["startTime"].is_string() && f["cursor"].is_string()));

    assert!(
        agent.terminate().success(),
        "agent exits cleanly on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_detaches_and_flushes_what_was_counted() {
    if !privileged("sigterm_detaches_and_flushes_what_was_counted") {
        return;
    }
    let hosts = TwoHosts::create("stop").expect("testbed");
    // Timeouts far away: only the shutdown flush can report this traffic.
    let agent = agent_on(&hosts, &["--active-timeout", "5m", "--idle-timeout", "5m"]);
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let status = status_of(&mut client).await;
    assert_eq!(status.interfaces.len(), 1);
    let mode = status.interfaces[0].attach_mode.clone();

    let udp = tokio::task::block_in_place(|| {
        testbed::udp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 4, 100).expect("udp")
    });
    let exit = tokio::task::block_in_place(|| agent.terminate());
    assert!(exit.success(), "clean exit: {exit:?}");

    let totals = collect_until(&mut stream, Duration::from_secs(10), |_| false).await;
    let conn = totals
        .get(&id(UDP, udp.client, udp.server))
        .expect("the flushed UDP flow reaches a follower before the stream ends");
    assert_eq!(
        (conn.request_packets, conn.request_bytes, conn.reply_packets),
        (4, 4 * (100 + 8 + 20), 4)
    );
    assert!(conn
        .records
        .iter()
        .all(|f| f.report_reason == pb::ReportReason::Shutdown as i32));

    // Nothing stays attached to the interface.
    if mode == "tcx" {
        let left = hosts
            .a
            .run(|| {
                [
                    aya::programs::TcAttachType::Ingress,
                    aya::programs::TcAttachType::Egress,
                ]
                .into_iter()
                .map(|t| {
                    aya::programs::SchedClassifier::query_tcx(testbed::VETH, t)
                        .map(|(_, programs)| programs.len())
                })
                .collect::<Result<Vec<_>, _>>()
            })
            .expect("enter namespace")
            .expect("query tcx");
        assert_eq!(left, vec![0, 0], "programs still attached after shutdown");
    }
}

fn scrape(addr: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to metrics");
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: flowd\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_history_and_metrics_and_export_see_the_flows() {
    if !privileged("restart_keeps_history_and_metrics_and_export_see_the_flows") {
        return;
    }
    let hosts = TwoHosts::create("restart").expect("testbed");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("flows.redb");
    let export = dir.path().join("export/flows.jsonl");
    let netns = hosts.a.path();
    let args = [
        "--netns",
        netns.to_str().unwrap(),
        "--interface",
        testbed::VETH,
        "--active-timeout",
        "1s",
        "--sweep-interval",
        "200ms",
        "--metrics-listen",
        "127.0.0.1:0",
        "--export-file",
        export.to_str().unwrap(),
    ];
    let keep = tempfile::tempdir().unwrap();
    let mut agent = AgentProcess::start_with(
        tempfile::tempdir().unwrap(),
        keep.path().join("a.sock"),
        &store,
        &args,
    );
    let metrics_line = agent
        .log_lines
        .iter()
        .find(|l| l.contains("metrics listening"))
        .cloned()
        .or_else(|| {
            agent.wait_for_log("metrics listening", Duration::from_secs(5));
            agent.log_lines.last().cloned()
        })
        .expect("metrics address logged");
    let metrics_addr = metrics_line
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("addr field")
        .to_owned();

    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let udp = tokio::task::block_in_place(|| {
        testbed::udp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 3, 64).expect("udp")
    });
    let first = collect_until(&mut stream, Duration::from_secs(15), |t| {
        t.contains_key(&id(UDP, udp.client, udp.server))
    })
    .await;
    let before = first[&id(UDP, udp.client, udp.server)].last().cursor;

    let metrics = tokio::task::block_in_place(|| scrape(&metrics_addr));
    assert!(
        metrics.starts_with("HTTP/1.0 200") || metrics.starts_with("HTTP/1.1 200"),
        "{metrics}"
    );
    assert!(metrics.contains("flowd_flows_recorded_total"), "{metrics}");
    assert!(
        metrics.contains("flowd_flow_map_capacity 65536"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flowd_flows_by_verdict_total{verdict=\"forwarded\"}"),
        "{metrics}"
    );
    drop(stream);
    assert!(tokio::task::block_in_place(|| agent.terminate()).success());

    let exported = std::fs::read_to_string(&export).expect("export file written");
    let port = udp.client.port().to_string();
    assert!(
        exported
            .lines()
            .any(|l| l.contains(&format!("\"port\":{port}"))),
        "the flow is in the export file:\n{exported}"
    );

    // Same history file, new agent: the old flow is served with its cursor; new ones follow it.
    let agent = AgentProcess::start_with(
        tempfile::tempdir().unwrap(),
        keep.path().join("b.sock"),
        &store,
        &args[..8],
    );
    let mut client = agent.client().await;
    let mut replay = client
        .get_flows(pb::GetFlowsRequest {
            after_cursor: Some(before - 1),
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let udp2 = tokio::task::block_in_place(|| {
        testbed::udp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 2, 64).expect("udp")
    });
    let after = collect_until(&mut replay, Duration::from_secs(15), |t| {
        t.contains_key(&id(UDP, udp.client, udp.server))
            && t.contains_key(&id(UDP, udp2.client, udp2.server))
    })
    .await;
    let old = &after[&id(UDP, udp.client, udp.server)];
    assert_eq!(
        old.records[0].cursor, before,
        "the same record, same cursor, after restart"
    );
    let new = after[&id(UDP, udp2.client, udp2.server)].last().cursor;
    assert!(
        new > before,
        "cursors keep growing across restarts: {new} > {before}"
    );
    assert!(agent.terminate().success());
}

/// Drops TCP to port 42001 on input, as a CNI enforcing a policy would.
const DROP_TCP_42001_ON_INPUT: &str =
    "table inet flowd_test {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 42001 drop\n }\n}\n";

fn nft(netns: &str, script: &str) {
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())?;
            child.wait()
        })
        .expect("run nft (nftables)");
    assert!(status.success(), "nft -f failed: {script}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_drops_carry_their_reason_and_outcomes_are_told_apart() {
    if !privileged("kernel_drops_carry_their_reason_and_outcomes_are_told_apart") {
        return;
    }
    let hosts = TwoHosts::create("drops").expect("testbed");
    // Host A drops TCP to 42001 on input, as a CNI enforcing a policy would.
    nft(&hosts.a.name, DROP_TCP_42001_ON_INPUT);
    let agent = agent_on(
        &hosts,
        &[
            "--active-timeout",
            "1s",
            "--sweep-interval",
            "200ms",
            "--unanswered-timeout",
            "500ms",
        ],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let a = IpAddr::V4(testbed::HOST_A_V4);
    let udp_closed = tokio::task::block_in_place(|| {
        hosts
            .b
            .run(|| {
                let dropped = std::net::TcpStream::connect_timeout(
                    &SocketAddr::new(a, 42001),
                    Duration::from_millis(1500),
                );
                assert!(dropped.is_err(), "the nftables rule drops the SYN");
                let refused = std::net::TcpStream::connect(SocketAddr::new(a, 42002));
                assert!(refused.is_err(), "nothing listens on 42002");
                let udp = std::net::UdpSocket::bind("198.18.0.2:0").unwrap();
                udp.send_to(b"hello", SocketAddr::new(a, 5353)).unwrap();
                udp.local_addr().unwrap()
            })
            .expect("enter namespace B")
    });
    let b = IpAddr::V4(testbed::HOST_B_V4);
    let totals = collect_until(&mut stream, Duration::from_secs(15), |t| {
        let has = |port: u16, proto: i32| {
            t.iter().any(|(id, totals)| {
                id.protocol == proto
                    && id.destination.port() == port
                    && id.source.ip() == b
                    && totals
                        .records
                        .iter()
                        .any(|f| f.verdict == pb::Verdict::Dropped as i32)
            })
        };
        has(42001, TCP) && has(42002, TCP) && has(5353, UDP)
    })
    .await;
    let find = |port: u16, proto: i32| {
        totals
            .iter()
            .find(|(id, _)| {
                id.protocol == proto && id.destination.port() == port && id.source.ip() == b
            })
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("no flow to port {port}: {:?}", totals.keys()))
    };
    let syn_dropped = find(42001, TCP);
    let last = syn_dropped
        .records
        .iter()
        .rev()
        .find(|f| f.verdict == pb::Verdict::Dropped as i32)
        .expect("a dropped record");
    assert_eq!(last.drop_reason, "NETFILTER_DROP");
    assert!(last
        .request
        .as_ref()
        .is_some_and(|r| r.dropped_packets >= 1));
    assert!(!last.drop_location.is_empty(), "where it was dropped");
    assert!(
        syn_dropped
            .records
            .iter()
            .any(|f| f.outcome == pb::Outcome::Unanswered as i32),
        "a dropped SYN is never answered: {:?}",
        syn_dropped
            .records
            .iter()
            .map(|f| f.outcome)
            .collect::<Vec<_>>()
    );

    let closed = find(42002, TCP);
    assert!(closed
        .records
        .iter()
        .any(|f| f.outcome == pb::Outcome::Refused as i32));
    assert!(closed.records.iter().any(|f| f.drop_reason == "NO_SOCKET"));

    let udp = find(5353, UDP);
    assert!(udp.records.iter().any(|f| f.drop_reason == "NO_SOCKET"));
    assert!(
        udp.records
            .iter()
            .any(|f| f.outcome == pb::Outcome::Refused as i32),
        "the ICMP port unreachable is tied to the datagram it answers"
    );
    assert_eq!(
        udp.records[0].source.as_ref().map(|s| s.port),
        Some(u32::from(udp_closed.port()))
    );
    assert!(agent.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_classic_tracepoint_fallback_ties_drops_to_flows_too() {
    if !privileged("the_classic_tracepoint_fallback_ties_drops_to_flows_too") {
        return;
    }
    let hosts = TwoHosts::create("droptp").expect("testbed");
    nft(&hosts.a.name, DROP_TCP_42001_ON_INPUT);
    let agent = agent_on(
        &hosts,
        &[
            "--drop-probe",
            "tracepoint",
            "--active-timeout",
            "1s",
            "--sweep-interval",
            "200ms",
        ],
    );
    let mut client = agent.client().await;
    let status = status_of(&mut client).await;
    assert!(
        status
            .programs
            .iter()
            .any(|p| p == flowd::capture::TRACEPOINT_PROGRAM)
            && !status
                .programs
                .iter()
                .any(|p| p == flowd::capture::DROP_PROGRAM),
        "the classic tracepoint is the drop probe: {:?}",
        status.programs
    );
    let mut stream = support::follow(&mut client).await;
    let a = IpAddr::V4(testbed::HOST_A_V4);
    tokio::task::block_in_place(|| {
        hosts
            .b
            .run(|| {
                let dropped = std::net::TcpStream::connect_timeout(
                    &SocketAddr::new(a, 42001),
                    Duration::from_millis(700),
                );
                assert!(dropped.is_err(), "the nftables rule drops the SYN");
            })
            .expect("enter namespace B")
    });
    let totals = collect_until(&mut stream, Duration::from_secs(15), |t| {
        t.iter().any(|(id, totals)| {
            id.destination.port() == 42001
                && totals
                    .records
                    .iter()
                    .any(|f| f.drop_reason == "NETFILTER_DROP")
        })
    })
    .await;
    let (_, dropped) = totals
        .iter()
        .find(|(id, _)| id.destination.port() == 42001)
        .expect("the dropped connection");
    let record = dropped
        .records
        .iter()
        .find(|f| f.drop_reason == "NETFILTER_DROP")
        .expect("a record with the drop reason");
    assert_eq!(record.verdict, pb::Verdict::Dropped as i32);
    assert!(record
        .request
        .as_ref()
        .is_some_and(|r| r.dropped_packets >= 1));
    let counters = status_of(&mut client).await.counters;
    assert!(
        counters
            .get("host_drops_netfilter_drop")
            .copied()
            .unwrap_or(0)
            >= 1,
        "host-wide drops by reason: {counters:?}"
    );
    assert!(agent.terminate().success());
}

fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("ip");
    assert!(status.success(), "ip {args:?}");
}

/// tcx links the agent process holds open (one per attached hook).
fn tcx_links_held(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("fdinfo")
        .filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_to_string(entry.path())
                .map(|info| {
                    info.lines()
                        .any(|l| l.starts_with("link_type:") && l.contains("tcx"))
                })
                .unwrap_or(false)
        })
        .count()
}

type FlowClient = pb::flow_service_client::FlowServiceClient<tonic::transport::Channel>;

async fn status_of(client: &mut FlowClient) -> pb::GetStatusResponse {
    client
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("GetStatus")
        .into_inner()
}

async fn interfaces_of(client: &mut FlowClient) -> Vec<String> {
    status_of(client)
        .await
        .interfaces
        .into_iter()
        .filter_map(|i| i.interface.map(|i| i.name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interfaces_are_followed_as_they_come_and_go() {
    if !privileged("interfaces_are_followed_as_they_come_and_go") {
        return;
    }
    let hosts = TwoHosts::create("links").expect("testbed");
    let netns = hosts.a.path();
    // No --interface: every non-loopback interface, now and later.
    let mut agent = AgentProcess::start(&[
        "--netns",
        netns.to_str().unwrap(),
        "--active-timeout",
        "1s",
        "--sweep-interval",
        "200ms",
    ]);
    let pid = agent.pid();
    let mut client = agent.client().await;
    assert_eq!(interfaces_of(&mut client).await, [testbed::VETH]);
    assert_eq!(tcx_links_held(pid), 2);

    ip(&[
        "-n",
        &hosts.a.name,
        "link",
        "add",
        "veth1",
        "type",
        "veth",
        "peer",
        "name",
        "veth1",
        "netns",
        &hosts.b.name,
    ]);
    for (ns, addr) in [
        (&hosts.a.name, "198.19.0.1/24"),
        (&hosts.b.name, "198.19.0.2/24"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", "veth1"]);
        ip(&["-n", ns, "link", "set", "veth1", "up"]);
    }
    tokio::task::block_in_place(|| {
        agent.wait_for_log("attached interface=veth1", Duration::from_secs(10))
    });
    assert!(interfaces_of(&mut client)
        .await
        .contains(&"veth1".to_owned()));
    assert_eq!(tcx_links_held(pid), 4);

    let mut stream = support::follow(&mut client).await;
    let udp = tokio::task::block_in_place(|| {
        testbed::udp_exchange(&hosts, "198.19.0.2".parse().unwrap(), 3, 32).expect("udp over veth1")
    });
    let totals = collect_until(&mut stream, Duration::from_secs(10), |t| {
        t.contains_key(&id(UDP, udp.client, udp.server))
    })
    .await;
    let record = totals[&id(UDP, udp.client, udp.server)].last().clone();
    assert_eq!(record.interface.map(|i| i.name).as_deref(), Some("veth1"));

    ip(&["-n", &hosts.a.name, "link", "del", "veth1"]);
    tokio::task::block_in_place(|| {
        agent.wait_for_log("interface removed interface=veth1", Duration::from_secs(10))
    });
    assert_eq!(interfaces_of(&mut client).await, [testbed::VETH]);
    assert_eq!(
        tcx_links_held(pid),
        2,
        "the removed interface's links are released"
    );
    assert!(agent.terminate().success());
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_program_dropping_first_hides_nothing_and_keeps_its_verdict() {
    if !privileged("another_program_dropping_first_hides_nothing_and_keeps_its_verdict") {
        return;
    }
    let hosts = TwoHosts::create("coexist").expect("testbed");
    // The dropper would eat A's ARP answers too: give B a static neighbour entry for A.
    let link = std::process::Command::new("ip")
        .args(["-n", &hosts.a.name, "-j", "link", "show", testbed::VETH])
        .output()
        .expect("ip link show");
    let link: serde_json::Value = serde_json::from_slice(&link.stdout).expect("ip -j output");
    let mac = link[0]["address"].as_str().expect("mac address").to_owned();
    ip(&[
        "-n",
        &hosts.b.name,
        "neigh",
        "replace",
        "198.18.0.1",
        "lladdr",
        &mac,
        "dev",
        testbed::VETH,
        "nud",
        "permanent",
    ]);
    // Another tool's tcx program that drops every incoming packet, attached before flowd starts.
    let dropper = testbed::load_raw_tc_program(2).expect("load the other program");
    let _other_link = hosts
        .a
        .run(|| {
            let ifindex =
                nix::net::if_::if_nametoindex(testbed::VETH).map_err(std::io::Error::from)?;
            testbed::attach_tcx_last(&dropper, ifindex, true)
        })
        .expect("enter namespace A")
        .expect("attach the other program");
    let agent = agent_on(
        &hosts,
        &["--active-timeout", "1s", "--sweep-interval", "200ms"],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let receiver = hosts
        .a
        .run(|| std::net::UdpSocket::bind("198.18.0.1:0"))
        .unwrap()
        .unwrap();
    let target = receiver.local_addr().unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let sender = hosts
        .b
        .run(|| std::net::UdpSocket::bind("198.18.0.2:0"))
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        sender.send_to(b"are you there", target).unwrap();
    }
    let mut buf = [0u8; 64];
    assert!(
        receiver.recv_from(&mut buf).is_err(),
        "the other program still drops: flowd does not change a packet's fate"
    );
    let source = sender.local_addr().unwrap();
    let totals = collect_until(&mut stream, Duration::from_secs(10), |t| {
        t.get(&id(UDP, source, target))
            .is_some_and(|c| c.request_packets >= 3)
            && t.get(&id(UDP, source, target))
                .is_some_and(|c| c.records.iter().any(|f| !f.drop_reason.is_empty()))
    })
    .await;
    let conn = totals
        .get(&id(UDP, source, target))
        .expect("flowd, first in the chain, saw the packets the other program dropped");
    assert_eq!(conn.request_packets, 3);
    assert!(
        conn.records
            .iter()
            .any(|f| f.verdict == pb::Verdict::Dropped as i32 && f.drop_reason == "TC_INGRESS"),
        "the drop is reported with the kernel's reason: {:?}",
        conn.records
            .iter()
            .map(|f| &f.drop_reason)
            .collect::<Vec<_>>()
    );
    assert!(agent.terminate().success());
}

const CLUSTER: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: fmeserver, labels: {team: gis}}}
- apiVersion: v1
  kind: Pod
  metadata:
    name: engine-7d9f8c6b5-x2x4z
    namespace: fmeserver
    labels: {safe.k8s.fmeserver.component: engine, pod-template-hash: 7d9f8c6b5}
    ownerReferences: [{kind: ReplicaSet, name: engine-7d9f8c6b5}]
  spec: {nodeName: node-1}
  status: {podIP: 198.18.0.1, podIPs: [{ip: 198.18.0.1}, {ip: "fd00:f10d::1"}]}
- apiVersion: v1
  kind: Pod
  metadata:
    name: core-0
    namespace: fmeserver
    labels: {statefulset.kubernetes.io/pod-name: core-0, safe.k8s.fmeserver.component: core}
    ownerReferences: [{kind: StatefulSet, name: core}]
  spec: {nodeName: node-1}
  status: {podIP: 198.18.0.2}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: core-x1, namespace: fmeserver, labels: {kubernetes.io/service-name: core}}
  endpoints: [{addresses: [198.18.0.2]}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_name_their_pods_workloads_and_services_from_a_metadata_file() {
    if !privileged("flows_name_their_pods_workloads_and_services_from_a_metadata_file") {
        return;
    }
    let hosts = TwoHosts::create("meta").expect("testbed");
    let dir = tempfile::tempdir().unwrap();
    let metadata = dir.path().join("cluster.yaml");
    std::fs::write(&metadata, CLUSTER).unwrap();
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
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            follow: true,
            allow: vec![pb::FlowFilter {
                workload: vec!["Deployment/engine".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let tcp = tokio::task::block_in_place(|| {
        testbed::tcp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 100, 100).expect("tcp")
    });
    let totals = collect_until(&mut stream, Duration::from_secs(10), |t| {
        t.contains_key(&id(TCP, tcp.client, tcp.server))
    })
    .await;
    let record = totals[&id(TCP, tcp.client, tcp.server)].last().clone();
    let source = record.source.expect("source");
    let destination = record.destination.expect("destination");
    assert_eq!(source.kind, pb::EndpointKind::Pod as i32);
    assert_eq!(
        (source.namespace.as_str(), source.name.as_str()),
        ("fmeserver", "engine-7d9f8c6b5-x2x4z")
    );
    assert_eq!(
        source.workload.map(|w| (w.kind, w.name)),
        Some(("Deployment".into(), "engine".into()))
    );
    assert_eq!(
        source
            .labels
            .get("safe.k8s.fmeserver.component")
            .map(String::as_str),
        Some("engine")
    );
    assert_eq!(destination.name, "core-0");
    assert_eq!(destination.workload.map(|w| w.name), Some("core".into()));
    assert_eq!(destination.services, vec!["fmeserver/core".to_owned()]);
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
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {}/cgroup.procs && exec ip netns exec {netns} python3 -c \"$0\"",
                cgroup.display()
            ),
            script,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read its first line");
    (child, line.trim().to_owned())
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

    let totals = collect_until(&mut stream, Duration::from_secs(15), |t| {
        t.iter().any(|(id, c)| {
            id.source.port() == client_port && c.records.iter().any(|f| f.process.is_some())
        })
    })
    .await;
    let (_, conn) = totals
        .iter()
        .find(|(id, _)| id.source.port() == client_port)
        .expect("the connection");
    let process = conn
        .records
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_drops_refusals_and_blackholed_answers() {
    if !privileged("ipv6_drops_refusals_and_blackholed_answers") {
        return;
    }
    let hosts = TwoHosts::create("drops6").expect("testbed");
    // A drops TCP to 42001; B's answers from port 42003 vanish on their way out (a blackhole).
    nft(
        &hosts.a.name,
        "table inet t {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 42001 drop\n }\n}\n",
    );
    nft(
        &hosts.b.name,
        "table inet t {\n chain output {\n  type filter hook output priority 0;\n  ip6 daddr fd00:f10d::1 tcp sport 42003 drop\n }\n}\n",
    );
    let blackholed = hosts
        .b
        .run(|| std::net::TcpListener::bind("[fd00:f10d::2]:42003"))
        .unwrap()
        .unwrap();
    let agent = agent_on(
        &hosts,
        &[
            "--active-timeout",
            "1s",
            "--sweep-interval",
            "200ms",
            "--unanswered-timeout",
            "500ms",
        ],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let (a, b) = (
        IpAddr::V6(testbed::HOST_A_V6),
        IpAddr::V6(testbed::HOST_B_V6),
    );
    tokio::task::block_in_place(|| {
        hosts
            .b
            .run(|| {
                let timeout = Duration::from_millis(800);
                assert!(
                    std::net::TcpStream::connect_timeout(&SocketAddr::new(a, 42001), timeout)
                        .is_err()
                );
                assert!(std::net::TcpStream::connect(SocketAddr::new(a, 42002)).is_err());
                let udp = std::net::UdpSocket::bind("[fd00:f10d::2]:0").unwrap();
                udp.send_to(b"hello", SocketAddr::new(a, 5353)).unwrap();
            })
            .unwrap();
        hosts
            .a
            .run(|| {
                let answered = std::net::TcpStream::connect_timeout(
                    &SocketAddr::new(b, 42003),
                    Duration::from_millis(800),
                );
                assert!(answered.is_err(), "the answers are blackholed");
            })
            .unwrap();
    });
    drop(blackholed);
    let totals = collect_until(&mut stream, Duration::from_secs(15), |t| {
        let has = |port: u16, want: &dyn Fn(&pb::Flow) -> bool| {
            t.iter()
                .any(|(id, c)| id.destination.port() == port && c.records.iter().any(want))
        };
        has(42001, &|f| f.drop_reason == "NETFILTER_DROP")
            && has(42002, &|f| f.outcome == pb::Outcome::Refused as i32)
            && has(5353, &|f| f.outcome == pb::Outcome::Refused as i32)
            && has(42003, &|f| f.outcome == pb::Outcome::Unanswered as i32)
    })
    .await;
    let find = |port: u16| {
        totals
            .iter()
            .find(|(id, _)| id.destination.port() == port)
            .map(|(id, c)| (id.clone(), c.clone()))
            .unwrap_or_else(|| panic!("no IPv6 flow to port {port}: {:?}", totals.keys()))
    };
    let (id, dropped) = find(42001);
    assert!(id.source.is_ipv6());
    assert!(dropped
        .records
        .iter()
        .any(|f| f.verdict == pb::Verdict::Dropped as i32
            && f.drop_reason == "NETFILTER_DROP"
            && f.ip_version == 6));
    let (_, refused) = find(42002);
    assert!(refused
        .records
        .iter()
        .any(|f| f.outcome == pb::Outcome::Refused as i32));
    let (_, udp) = find(5353);
    assert!(
        udp.records
            .iter()
            .any(|f| f.outcome == pb::Outcome::Refused as i32),
        "the ICMPv6 port unreachable is tied to the datagram"
    );
    let (id, blackholed) = find(42003);
    assert_eq!(id.source.ip(), a, "A started it");
    assert!(blackholed
        .records
        .iter()
        .all(|f| f.reply.as_ref().is_none_or(|r| r.packets == 0)));
    assert!(blackholed
        .records
        .iter()
        .any(|f| f.outcome == pb::Outcome::Unanswered as i32));
    assert!(agent.terminate().success());
}

fn tc_filters(hosts: &TwoHosts, direction: &str) -> String {
    let output = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &hosts.a.name,
            "tc",
            "filter",
            "show",
            "dev",
        ])
        .args([testbed::VETH, direction])
        .output()
        .expect("tc");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clsact_fallback_counts_and_detaches() {
    if !privileged("the_clsact_fallback_counts_and_detaches") {
        return;
    }
    let hosts = TwoHosts::create("clsact").expect("testbed");
    let agent = agent_on(&hosts, &["--tc-attach", "clsact", "--idle-timeout", "5m"]);
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let status = status_of(&mut client).await;
    assert_eq!(status.interfaces.len(), 1);
    assert_eq!(status.interfaces[0].attach_mode, "netlink");
    let pid = agent.pid();
    assert_eq!(tcx_links_held(pid), 0, "clsact was asked for, not tcx");
    for direction in ["ingress", "egress"] {
        assert!(
            tc_filters(&hosts, direction).contains("bpf"),
            "a {direction} filter"
        );
    }

    let tcp = tokio::task::block_in_place(|| {
        testbed::tcp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 3000, 500).expect("tcp")
    });
    let exit = tokio::task::block_in_place(|| agent.terminate());
    assert!(exit.success(), "clean exit: {exit:?}");
    let totals = collect_until(&mut stream, Duration::from_secs(10), |_| false).await;
    let conn = totals
        .get(&id(TCP, tcp.client, tcp.server))
        .expect("the TCP connection seen through the clsact filters");
    assert_tcp_side(
        conn.request_packets,
        conn.request_bytes,
        3000,
        20,
        "request",
    );
    for direction in ["ingress", "egress"] {
        assert!(
            !tc_filters(&hosts, direction).contains("bpf"),
            "the {direction} filter is removed on exit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_after_attaching_leaves_no_filter_behind() {
    if !privileged("a_start_that_fails_after_attaching_leaves_no_filter_behind") {
        return;
    }
    let hosts = TwoHosts::create("failstart").expect("testbed");
    let dir = tempfile::tempdir().unwrap();
    // The history cannot be opened (its folder is a file): the agent has attached by then.
    let not_a_folder = dir.path().join("file");
    std::fs::write(&not_a_folder, b"").unwrap();
    let store = not_a_folder.join("flows.redb");
    let socket = dir.path().join("flowd.sock");
    let netns = hosts.a.path();
    let (code, output) = tokio::task::block_in_place(|| {
        support::run_flowd(&[
            "run",
            "--netns",
            netns.to_str().expect("utf-8 path"),
            "--interface",
            testbed::VETH,
            "--tc-attach",
            "clsact",
            "--store-path",
            store.to_str().expect("utf-8 path"),
            "--socket",
            socket.to_str().expect("utf-8 path"),
        ])
    });
    assert_ne!(code, 0, "the start fails: {output}");
    assert!(
        output.contains("attached"),
        "it got as far as attaching: {output}"
    );
    for direction in ["ingress", "egress"] {
        assert!(
            !tc_filters(&hosts, direction).contains("bpf"),
            "the {direction} filter is removed when the start fails: {output}"
        );
    }
}

/// The agent as a library value: the caller binds its listeners and owns the shutdown signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_agent_serves_on_listeners_its_caller_bound() {
    if !privileged("an_in_process_agent_serves_on_listeners_its_caller_bound") {
        return;
    }
    let hosts = TwoHosts::create("inproc").expect("testbed");
    let dir = tempfile::tempdir().unwrap();
    let config = flowd::config::Config {
        interfaces: vec![testbed::VETH.to_owned()],
        netns: Some(hosts.a.path()),
        socket: dir.path().join("flowd.sock"),
        store_path: dir.path().join("flows.redb"),
        idle_timeout: Duration::from_secs(300),
        ..flowd::config::Config::default()
    };
    let listeners = flowd::agent::AgentListeners::bind(&config)
        .await
        .expect("bind");
    assert!(config.socket.exists(), "bound before the agent starts");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let agent = flowd::agent::RunningAgent::start_on(config, listeners, shutdown.clone())
        .await
        .expect("the agent starts");
    let mut stream = agent.follow().await.expect("follow");
    let udp = tokio::task::block_in_place(|| {
        testbed::udp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 3, 64).expect("udp")
    });
    // The caller's signal stops it: detached, then flushed to the follower.
    shutdown.cancel();
    agent.stopped().await.expect("a clean stop");
    let totals = collect_until(&mut stream, Duration::from_secs(10), |_| false).await;
    let conn = totals
        .get(&id(UDP, udp.client, udp.server))
        .expect("the exchange, flushed at shutdown");
    assert_eq!((conn.request_packets, conn.reply_packets), (3, 3));
}
