//! Stopping, restarting and failing to start: detach first, flush, keep the history; the agent in-process.

use super::{common::*, *};

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
    let metrics_addr = agent.logged_field("metrics listening", "addr");

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
        metrics.contains("flowd_flows_total{verdict=\"forwarded\",protocol=\"UDP\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("flowd_pipeline_queued_batches{from=\"capture\"}"),
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
    let pins = support::PinPath::within(dir.path());
    let (code, output) = tokio::task::block_in_place(|| {
        support::run_flowd(&[
            "run",
            "--pin-path",
            pins.arg(),
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
        pin_path: dir.path().join("bpf"),
        idle_timeout: Duration::from_secs(300),
        ..flowd::config::Config::default()
    };
    let _pins = support::PinPath(config.pin_path.clone());
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

/// Pinned maps and links: what is counted while no agent runs is reported by the next one, and
/// what the killed one reported is not reported again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_loses_nothing_that_was_counted_or_stored() {
    if !privileged("a_killed_agent_loses_nothing_that_was_counted_or_stored") {
        return;
    }
    let hosts = TwoHosts::create("sigkill").expect("testbed");
    let keep = tempfile::tempdir().unwrap();
    let store = keep.path().join("flows.redb");
    let socket = keep.path().join("flowd.sock");
    let pins = support::PinPath::within(keep.path());
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
        "--idle-timeout",
        "5m",
        "--pin-path",
        pins.arg(),
    ];
    let start =
        || AgentProcess::start_with(tempfile::tempdir().unwrap(), socket.clone(), &store, &args);
    // One UDP flow, the same tuple before, during and after the agent's death.
    let server = hosts
        .b
        .run(|| std::net::UdpSocket::bind("198.18.0.2:0"))
        .expect("enter B")
        .expect("bind in B");
    let target = server.local_addr().unwrap();
    let client = hosts
        .a
        .run(|| std::net::UdpSocket::bind("198.18.0.1:0"))
        .expect("enter A")
        .expect("bind in A");
    let flow = id(UDP, client.local_addr().unwrap(), target);
    let send = |count: usize| {
        for _ in 0..count {
            client.send_to(&[7u8; 100], target).expect("send");
        }
    };

    let agent = start();
    let mut client_api = agent.client().await;
    let mut stream = support::follow(&mut client_api).await;
    send(20);
    // The first agent reports part of the flow (active timeout) before it dies.
    let reported = collect_until(&mut stream, Duration::from_secs(15), |t| {
        t.get(&flow).is_some_and(|t| t.request_packets == 20)
    })
    .await;
    assert_eq!(
        reported[&flow].request_packets, 20,
        "reported before the kill"
    );
    drop(stream);
    send(10);
    tokio::task::block_in_place(|| agent.kill());
    // Nobody runs: the pinned links keep counting into the pinned map.
    send(15);

    let agent = start();
    assert!(
        agent
            .log_lines
            .iter()
            .any(|l| l.contains("took over the previous agent's link")),
        "the second agent took over the pinned link:\n{}",
        agent.log_lines.join("\n")
    );
    let mut client_api = agent.client().await;
    let mut replay = client_api
        .get_flows(pb::GetFlowsRequest {
            after_cursor: Some(0),
            follow: true,
            ..Default::default()
        })
        .await
        .expect("GetFlows")
        .into_inner();
    let all = collect_until(&mut replay, Duration::from_secs(15), |t| {
        t.get(&flow).is_some_and(|t| t.request_packets >= 45)
    })
    .await;
    assert_eq!(
        all.get(&flow).map(|t| t.request_packets),
        Some(45),
        "every packet sent, across the kill, is in the history"
    );
    drop(replay);
    assert!(tokio::task::block_in_place(|| agent.terminate()).success());

    // After an orderly stop the whole history holds each packet once, each byte once.
    let history = flowd::store::FlowStore::open(
        &store,
        flowd::store::Retention {
            max_age: Duration::MAX,
            max_bytes: u64::MAX,
        },
        1 << 20,
    )
    .expect("the history opens");
    let (mut packets, mut bytes) = (0, 0);
    let mut resume = None;
    loop {
        resume = history
            .page(flowd::store::Range::AfterCursor(0), resume, |record| {
                if support::id_of(&record).as_ref() == Some(&flow) {
                    let request = record.request.unwrap_or_default();
                    packets += request.packets;
                    bytes += request.bytes;
                }
                std::ops::ControlFlow::Continue(())
            })
            .expect("read the history");
        if resume.is_none() {
            break;
        }
    }
    assert_eq!(
        (packets, bytes),
        (45, 45 * 128),
        "each packet once, 100 bytes + UDP and IP headers"
    );
    // A fresh BPF filesystem holds the kernel's own progs.debug and maps.debug.
    let left: Vec<_> = walkdir(&pins.0)
        .into_iter()
        .filter(|path| path.extension().is_none_or(|e| e != "debug"))
        .collect();
    assert!(
        left.is_empty(),
        "an orderly stop leaves nothing pinned: {left:?}"
    );
}

/// clsact filters outlive a killed agent (they are not tied to a descriptor); the next start
/// removes them instead of counting every packet twice, and counts on with the pinned map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_left_by_a_killed_clsact_agent_are_replaced_at_start() {
    if !privileged("filters_left_by_a_killed_clsact_agent_are_replaced_at_start") {
        return;
    }
    let hosts = TwoHosts::create("orphans").expect("testbed");
    let keep = tempfile::tempdir().unwrap();
    let store = keep.path().join("flows.redb");
    let pins = support::PinPath::within(keep.path());
    let netns = hosts.a.path();
    let args = [
        "--netns",
        netns.to_str().unwrap(),
        "--interface",
        testbed::VETH,
        "--tc-attach",
        "clsact",
        "--pin-path",
        pins.arg(),
    ];
    let start = || {
        AgentProcess::start_with(
            tempfile::tempdir().unwrap(),
            keep.path().join("flowd.sock"),
            &store,
            &args,
        )
    };
    let ours = |direction: &str| {
        tc_filters(&hosts, direction)
            .lines()
            .filter(|line| line.contains("flowd_"))
            .count()
    };
    tokio::task::block_in_place(|| start().kill());
    assert_eq!(
        (ours("ingress"), ours("egress")),
        (1, 1),
        "a killed agent leaves its filters"
    );
    let agent = start();
    assert_eq!(
        (ours("ingress"), ours("egress")),
        (1, 1),
        "the next start replaced them, not added to them"
    );
    let mut client = agent.client().await;
    let mut stream = support::follow(&mut client).await;
    let udp = tokio::task::block_in_place(|| {
        testbed::udp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 3, 64).expect("udp")
    });
    let seen = collect_until(&mut stream, Duration::from_secs(15), |t| {
        t.contains_key(&id(UDP, udp.client, udp.server))
    })
    .await;
    let conn = &seen[&id(UDP, udp.client, udp.server)];
    assert_eq!(
        (conn.request_packets, conn.reply_packets),
        (3, 3),
        "each packet counted once"
    );
    drop(stream);
    assert!(tokio::task::block_in_place(|| agent.terminate()).success());
    assert_eq!((ours("ingress"), ours("egress")), (0, 0));
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        found.push(entry.path());
        if entry.path().is_dir() {
            found.extend(walkdir(&entry.path()));
        }
    }
    found
}
