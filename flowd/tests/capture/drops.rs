//! Kernel drops with their reasons (BTF and tracepoint probes), another program's drop, refusals and blackholes.

use flowd::telemetry::Counter;

use super::{common::*, *};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_drops_carry_their_reason_and_outcomes_are_told_apart() {
    if !privileged("kernel_drops_carry_their_reason_and_outcomes_are_told_apart") {
        return;
    }
    let hosts = TwoHosts::create("drops").expect("testbed");
    // Host A drops TCP to 42001 on input, as a CNI enforcing a policy would.
    hosts.a.nft(DROP_TCP_42001_ON_INPUT).expect("nftables");
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
    hosts.a.nft(DROP_TCP_42001_ON_INPUT).expect("nftables");
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
            .get(&Counter::HostDrops("NETFILTER_DROP".into()).name())
            .copied()
            .unwrap_or(0)
            >= 1,
        "host-wide drops by reason: {counters:?}"
    );
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
    let dropper = testbed::load_raw_tc_program(2, "other_tool").expect("load the other program");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_drops_refusals_and_blackholed_answers() {
    if !privileged("ipv6_drops_refusals_and_blackholed_answers") {
        return;
    }
    let hosts = TwoHosts::create("drops6").expect("testbed");
    // A drops TCP to 42001; B's answers from port 42003 vanish on their way out (a blackhole).
    hosts
        .a
        .nft("table inet t {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 42001 drop\n }\n}\n")
        .expect("nftables");
    hosts
        .b
        .nft("table inet t {\n chain output {\n  type filter hook output priority 0;\n  ip6 daddr fd00:f10d::1 tcp sport 42003 drop\n }\n}\n")
        .expect("nftables");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_ping_is_forwarded_though_the_kernel_frees_its_replies() {
    if !privileged("an_answered_ping_is_forwarded_though_the_kernel_frees_its_replies") {
        return;
    }
    let hosts = TwoHosts::create("pinged").expect("testbed");
    let agent = agent_on(
        &hosts,
        &["--active-timeout", "1s", "--sweep-interval", "200ms"],
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let b = IpAddr::V4(testbed::HOST_B_V4);
    tokio::task::block_in_place(|| testbed::ping(&hosts, b, 3)).expect("every ping answered");
    let icmp = pb::Protocol::Icmp as i32;
    let ping_of = |t: &std::collections::HashMap<FlowId, Totals>| {
        t.iter()
            .find(|(id, _)| id.protocol == icmp && id.destination.ip() == b)
            .map(|(_, totals)| totals.clone())
    };
    let totals = collect_until(&mut stream, Duration::from_secs(15), |t| {
        ping_of(t).is_some_and(|p| p.request_packets >= 3 && p.reply_packets >= 3)
    })
    .await;
    let ping = ping_of(&totals).expect("the ping's flow");
    // ping reads its replies from a raw socket; the kernel then frees each reply with
    // NO_SOCKET (no ICMP datagram socket wants it). That is a drop that stopped nothing.
    let freed: u64 = ping
        .records
        .iter()
        .filter_map(|f| f.reply.as_ref())
        .map(|side| side.dropped_packets)
        .sum();
    assert!(
        freed >= 1,
        "the kernel's frees of the replies are still counted: {:?}",
        ping.records
    );
    assert!(ping.records.iter().any(|f| f.drop_reason == "NO_SOCKET"));
    for record in &ping.records {
        assert_eq!(record.outcome, pb::Outcome::Answered as i32, "{record:?}");
        assert_eq!(
            record.verdict,
            pb::Verdict::Forwarded as i32,
            "answered traffic is forwarded: {record:?}"
        );
    }
    assert!(agent.terminate().success());
}
