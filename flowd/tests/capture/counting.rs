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
