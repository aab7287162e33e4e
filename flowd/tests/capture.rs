//! Privileged end-to-end tests: a real agent process attached to a veth pair in namespaces the
//! test creates, real TCP/UDP traffic, assertions through the gRPC API and `flowd dump`.

mod support;

use std::{net::IpAddr, time::Duration};

use flowd::{
    api::proto::v1 as pb,
    testbed::{self, TwoHosts},
};
use support::{collect_until, privileged, AgentProcess, FlowId};

const TCP: i32 = pb::Protocol::Tcp as i32;
const UDP: i32 = pb::Protocol::Udp as i32;
const EGRESS: i32 = pb::TrafficDirection::Egress as i32;
const INGRESS: i32 = pb::TrafficDirection::Ingress as i32;

fn flow_id(
    protocol: i32,
    from: std::net::SocketAddr,
    to: std::net::SocketAddr,
    direction: i32,
) -> FlowId {
    FlowId {
        protocol,
        source: from.ip().to_string(),
        source_port: u32::from(from.port()),
        destination: to.ip().to_string(),
        destination_port: u32::from(to.port()),
        direction,
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

/// IP header bytes per packet: fixed header; TCP header between 20 and 60 bytes.
fn ip_header_len(server: IpAddr) -> u64 {
    if server.is_ipv4() {
        20
    } else {
        40
    }
}

fn assert_tcp_direction(totals: &support::Totals, payload: usize, ip_header: u64, what: &str) {
    let payload = payload as u64;
    assert!(
        totals.packets >= 3,
        "{what}: SYN, data and FIN at least: {totals:?}"
    );
    let overhead = totals.bytes.checked_sub(payload).unwrap_or_else(|| {
        panic!(
            "{what}: {} bytes cannot carry a {payload}-byte payload",
            totals.bytes
        )
    });
    let (min, max) = (
        totals.packets * (ip_header + 20),
        totals.packets * (ip_header + 60),
    );
    assert!(
        (min..=max).contains(&overhead),
        "{what}: {overhead} header bytes over {} packets, expected {min}..={max}",
        totals.packets
    );
    let flags = totals
        .records
        .iter()
        .filter_map(|f| f.tcp_flags)
        .fold((false, false), |acc, f| (acc.0 | f.syn, acc.1 | f.fin));
    assert_eq!(flags, (true, true), "{what}: SYN and FIN seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_udp_flows_are_counted_for_ipv4_and_ipv6() {
    if !privileged("tcp_and_udp_flows_are_counted_for_ipv4_and_ipv6") {
        return;
    }
    let hosts = TwoHosts::create("e2e").expect("testbed");
    let agent = agent_on(
        &hosts,
        &["--active-timeout", "1s", "--sweep-interval", "200ms"],
    );
    let mut client = agent.client().await;
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            last: 0,
            follow: true,
        })
        .await
        .expect("GetFlows")
        .into_inner();

    const REQUEST: usize = 12_345;
    const RESPONSE: usize = 54_321;
    const DATAGRAMS: usize = 7;
    const DATAGRAM: usize = 300;
    let mut expected = Vec::new();
    for server in [
        IpAddr::V4(testbed::HOST_B_V4),
        IpAddr::V6(testbed::HOST_B_V6),
    ] {
        let (tcp, udp) = tokio::task::block_in_place(|| {
            (
                testbed::tcp_exchange(&hosts, server, REQUEST, RESPONSE).expect("tcp"),
                testbed::udp_exchange(&hosts, server, DATAGRAMS, DATAGRAM).expect("udp"),
            )
        });
        expected.push((server, tcp, udp));
    }

    let udp_wire = |server: IpAddr| {
        (
            DATAGRAMS as u64,
            (DATAGRAMS * (DATAGRAM + 8)) as u64 + DATAGRAMS as u64 * ip_header_len(server),
        )
    };
    let totals = collect_until(&mut stream, Duration::from_secs(20), |t| {
        expected.iter().all(|(server, tcp, udp)| {
            let tcp_done = [
                flow_id(TCP, tcp.client, tcp.server, EGRESS),
                flow_id(TCP, tcp.server, tcp.client, INGRESS),
            ]
            .iter()
            .all(|id| t.get(id).is_some_and(|x| x.ended()));
            let udp_done = [
                flow_id(UDP, udp.client, udp.server, EGRESS),
                flow_id(UDP, udp.server, udp.client, INGRESS),
            ]
            .iter()
            .all(|id| t.get(id).is_some_and(|x| x.packets >= udp_wire(*server).0));
            tcp_done && udp_done
        })
    })
    .await;

    for (server, tcp, udp) in &expected {
        let family = if server.is_ipv4() { "IPv4" } else { "IPv6" };
        let out = totals
            .get(&flow_id(TCP, tcp.client, tcp.server, EGRESS))
            .unwrap_or_else(|| panic!("{family} TCP egress flow missing; saw {:?}", totals.keys()));
        assert_tcp_direction(
            out,
            REQUEST,
            ip_header_len(*server),
            &format!("{family} TCP request"),
        );
        let back = totals
            .get(&flow_id(TCP, tcp.server, tcp.client, INGRESS))
            .unwrap_or_else(|| panic!("{family} TCP ingress flow missing"));
        assert_tcp_direction(
            back,
            RESPONSE,
            ip_header_len(*server),
            &format!("{family} TCP response"),
        );

        for (id, what) in [
            (flow_id(UDP, udp.client, udp.server, EGRESS), "request"),
            (flow_id(UDP, udp.server, udp.client, INGRESS), "answer"),
        ] {
            let got = totals
                .get(&id)
                .unwrap_or_else(|| panic!("{family} UDP {what} flow missing"));
            assert_eq!(
                (got.packets, got.bytes),
                udp_wire(*server),
                "{family} UDP {what}: exact counts"
            );
            let record = &got.records[0];
            assert_eq!(record.ip_version, if server.is_ipv4() { 4 } else { 6 });
            let interface = record.interface.as_ref().expect("interface");
            assert_eq!(interface.name, testbed::VETH);
            assert_ne!(interface.netns_cookie, 0);
        }
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
    assert!(lines.iter().any(|f| f["sourceIp"] == "198.18.0.1"
        && f["sourcePort"] == u64::from(tcp_v4.client.port())
        && f["protocol"] == "PROTOCOL_TCP"
        && f["direction"] == "TRAFFIC_DIRECTION_EGRESS"));
    assert!(lines.iter().any(|f| f["sourceIp"] == HOST_A_V6_TEXT
        && f["destinationIp"] == "fd00:f10d::2"
        && f["sourcePort"] == u64::from(udp_v6.client.port())));
    assert!(lines
        .iter()
        .all(|f| f["startTime"].is_string() && f["cursor"].is_string()));

    assert!(
        agent.terminate().success(),
        "agent exits cleanly on SIGTERM"
    );
}

const HOST_A_V6_TEXT: &str = "fd00:f10d::1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_detaches_and_flushes_what_was_counted() {
    if !privileged("sigterm_detaches_and_flushes_what_was_counted") {
        return;
    }
    let hosts = TwoHosts::create("stop").expect("testbed");
    // Timeouts far away: only the shutdown flush can report this traffic.
    let agent = agent_on(&hosts, &["--active-timeout", "5m", "--idle-timeout", "5m"]);
    let mut client = agent.client().await;
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            last: 0,
            follow: true,
        })
        .await
        .expect("GetFlows")
        .into_inner();
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("GetStatus")
        .into_inner();
    assert_eq!(status.interfaces.len(), 1);
    let mode = status.interfaces[0].attach_mode.clone();

    let udp = tokio::task::block_in_place(|| {
        testbed::udp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 4, 100).expect("udp")
    });
    let exit = tokio::task::block_in_place(|| agent.terminate());
    assert!(exit.success(), "clean exit: {exit:?}");

    let totals = collect_until(&mut stream, Duration::from_secs(10), |_| false).await;
    let out = totals
        .get(&flow_id(UDP, udp.client, udp.server, EGRESS))
        .expect("the flushed UDP flow reaches a follower before the stream ends");
    assert_eq!((out.packets, out.bytes), (4, 4 * (100 + 8 + 20)));
    assert!(out
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
                        .map(|(_, p)| p.len())
                })
                .collect::<Result<Vec<_>, _>>()
            })
            .expect("enter namespace")
            .expect("query tcx");
        assert_eq!(left, vec![0, 0], "programs still attached after shutdown");
    }
}
