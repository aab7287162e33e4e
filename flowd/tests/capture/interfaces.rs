//! Interfaces coming and going, and the classic clsact attachment.

use super::{common::*, *};

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
