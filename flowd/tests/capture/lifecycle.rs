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
