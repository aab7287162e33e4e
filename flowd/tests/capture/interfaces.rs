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

/// Runs `ip -n <netns> -batch -` with `commands`, one per line.
fn ip_batch(netns: &str, commands: &[String]) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("ip")
        .args(["-n", netns, "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("ip -batch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(commands.join("\n").as_bytes())
        .expect("write commands");
    assert!(child.wait().expect("wait for ip").success(), "ip -batch");
}

/// Non-loopback links of a namespace, as `ip` lists them.
fn links_in(netns: &str) -> std::collections::BTreeSet<String> {
    let output = std::process::Command::new("ip")
        .args(["-n", netns, "-o", "link", "show"])
        .output()
        .expect("ip link show");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .filter(|name| name != "lo")
        .collect()
}

/// 300 veth pairs created and 150 deleted in bursts, with a receive buffer so small that the
/// notifications overflow it: the agent lists the links again and ends attached to exactly
/// the links there are, counting traffic throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_veths_and_an_overrun_leave_the_attached_set_true() {
    if !privileged("hundreds_of_veths_and_an_overrun_leave_the_attached_set_true") {
        return;
    }
    let hosts = TwoHosts::create("churn").expect("testbed");
    let netns = hosts.a.path();
    let agent = AgentProcess::start(&[
        "--netns",
        netns.to_str().unwrap(),
        "--netlink-receive-buffer",
        "4096",
        "--sweep-interval",
        "200ms",
    ]);
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let create: Vec<String> = (0..300)
        .map(|i| format!("link add c{i} type veth peer name p{i}"))
        .collect();
    let delete: Vec<String> = (0..150).map(|i| format!("link del c{i}")).collect();
    let during = tokio::task::block_in_place(|| {
        ip_batch(&hosts.a.name, &create);
        let during =
            testbed::udp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 3, 64).expect("udp");
        ip_batch(&hosts.a.name, &delete);
        during
    });
    let expected = links_in(&hosts.a.name);
    assert_eq!(expected.len(), 1 + 300, "veth0 and 150 pairs remain");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut attached = std::collections::BTreeSet::new();
    while tokio::time::Instant::now() < deadline {
        attached = interfaces_of(&mut client).await.into_iter().collect();
        if attached == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missing: Vec<_> = expected.difference(&attached).collect();
    let extra: Vec<_> = attached.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "attached set differs from the system: missing {missing:?}, extra {extra:?}"
    );
    let status = status_of(&mut client).await;
    assert!(
        status
            .counters
            .get("interface_resyncs")
            .copied()
            .unwrap_or(0)
            > 0,
        "a 4 KiB buffer overflows under 600 new links: {:?}",
        status.counters
    );
    // Traffic was counted through the churn.
    let seen = collect_until(&mut stream, Duration::from_secs(15), |t| {
        t.contains_key(&id(UDP, during.client, during.server))
    })
    .await;
    let conn = &seen[&id(UDP, during.client, during.server)];
    assert_eq!((conn.request_packets, conn.reply_packets), (3, 3));
    drop(stream);
    assert!(tokio::task::block_in_place(|| agent.terminate()).success());
}
