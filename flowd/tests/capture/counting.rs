//! Packets, bytes and flags of TCP and UDP connections, IPv4 and IPv6.

use super::{common::*, *};

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
async fn connections_that_reuse_a_tuple_are_each_their_own_record() {
    if !privileged("connections_that_reuse_a_tuple_are_each_their_own_record") {
        return;
    }
    const CONNECTIONS: usize = 30;
    let hosts = TwoHosts::create("reuse").expect("testbed");
    // A long end grace would hide nothing here: every reuse comes well within it.
    let agent = agent_on(
        &hosts,
        &["--active-timeout", "5s", "--sweep-interval", "200ms"],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let listener = hosts
        .b
        .run(|| std::net::TcpListener::bind("198.18.0.2:0"))
        .expect("enter B")
        .expect("bind in B");
    let server = listener.local_addr().expect("bound");
    let source_port = 41_999;
    tokio::task::block_in_place(|| {
        hosts
            .a
            .run(|| {
                for _ in 0..CONNECTIONS {
                    let SocketAddr::V4(server) = server else {
                        panic!("an IPv4 server");
                    };
                    let source = std::net::SocketAddrV4::new(testbed::HOST_A_V4, source_port);
                    testbed::connect_and_reset(Some(source), server).expect("connect and reset");
                }
            })
            .expect("enter A")
    });
    let tuple = id(
        TCP,
        SocketAddr::new(IpAddr::V4(testbed::HOST_A_V4), source_port),
        server,
    );
    let ended = |t: &std::collections::HashMap<FlowId, Totals>| {
        t.get(&tuple).map_or(0, |totals| {
            totals
                .records
                .iter()
                .filter(|f| f.report_reason == pb::ReportReason::ConnectionEnd as i32)
                .count()
        })
    };
    let totals = collect_until(&mut stream, Duration::from_secs(20), |t| {
        ended(t) >= CONNECTIONS
    })
    .await;
    let connection = totals.get(&tuple).expect("the reused tuple's records");
    assert_eq!(
        ended(&totals),
        CONNECTIONS,
        "one ended record per connection: {:?}",
        connection
            .records
            .iter()
            .map(|f| (f.report_reason, f.request.as_ref().map(|r| r.packets)))
            .collect::<Vec<_>>()
    );
    for record in &connection.records {
        let request = record.request.as_ref().expect("request counters");
        assert!(
            request.packets >= 2 && request.packets <= 4,
            "SYN, ACK and RST of one connection, not several merged: {record:?}"
        );
        let flags = request.tcp_flags.as_ref().expect("tcp flags");
        assert!(flags.syn && flags.rst, "{record:?}");
    }
    assert_eq!(connection.request_packets, CONNECTIONS as u64 * 3);
    drop(listener);
    assert!(agent.terminate().success());
}
