//! The story this product exists for (../shared/seed): an application broke after a default-deny
//! policy missed a port range, and it took weeks to find. Here it takes one command.
//!
//! Host A is the engine pod, host B the core pod (deploy/examples/seed/cluster.yaml). The agent
//! watches the core's side. nftables in B stands in for the CNI enforcing the Calico policies.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    time::Duration,
};

use flowd::{proto::v1 as pb, testbed::TwoHosts};
use support::{collect_until, privileged, AgentProcess};

const PORTS: [u16; 3] = [7070, 42001, 42002];

/// What the CNI makes of the seed's policies in the core's namespace: the engine's range dropped.
const ENFORCE_SEED_POLICIES: &str = "table inet cni {\n chain input {\n  type filter hook \
    input priority 0;\n  ip saddr 198.18.0.1 tcp dport 42000-43000 drop\n }\n}\n";

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples/seed")
        .join(name)
}

fn flowd(args: &[&str]) -> (i32, String) {
    support::run_flowd(args)
}

/// The core listens on every port the engine uses; each accepted connection gets an answer.
fn serve(hosts: &TwoHosts) -> Vec<std::thread::JoinHandle<()>> {
    PORTS
        .iter()
        .map(|port| {
            let listener = hosts
                .b
                .run(|| TcpListener::bind(("198.18.0.2", *port)))
                .unwrap()
                .unwrap();
            listener.set_nonblocking(false).unwrap();
            std::thread::spawn(move || {
                while let Ok((mut stream, _)) = listener.accept() {
                    let mut buf = [0u8; 16];
                    let _ = stream.read(&mut buf);
                    let _ = stream.write_all(b"core");
                }
            })
        })
        .collect()
}

/// The engine talks to the core on each port; returns which ports answered.
fn engine_talks(hosts: &TwoHosts) -> Vec<u16> {
    hosts
        .a
        .run(|| {
            PORTS
                .iter()
                .filter(|port| {
                    let addr = SocketAddr::from(([198, 18, 0, 2], **port));
                    let Ok(mut stream) =
                        TcpStream::connect_timeout(&addr, Duration::from_millis(800))
                    else {
                        return false;
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut answer = [0u8; 4];
                    stream.write_all(b"job").is_ok() && stream.read_exact(&mut answer).is_ok()
                })
                .copied()
                .collect()
        })
        .expect("enter the engine's namespace")
}

async fn flows_by_port(agent: &AgentProcess) -> std::collections::HashMap<u16, Vec<pb::Flow>> {
    let mut client = agent.client().await;
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            follow: true,
            last: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let totals = collect_until(&mut stream, Duration::from_secs(15), |t| {
        PORTS.iter().all(|port| {
            t.iter().any(|(id, totals)| {
                id.destination.port() == *port
                    && totals
                        .records
                        .iter()
                        .any(|f| f.outcome != pb::Outcome::RequestOnly as i32)
            })
        })
    })
    .await;
    let mut by_port = std::collections::HashMap::new();
    for (id, totals) in totals {
        if id.source.ip().to_string() == "198.18.0.1" {
            by_port
                .entry(id.destination.port())
                .or_insert_with(Vec::new)
                .extend(totals.records);
        }
    }
    by_port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_story_in_one_command() {
    if !privileged("the_seed_story_in_one_command") {
        return;
    }
    let hosts = TwoHosts::create("seed").expect("testbed");
    let _servers = serve(&hosts);
    let policies = data("policies.yaml");
    let cluster = data("cluster.yaml");
    let base = core_agent_args(&hosts);
    let base: Vec<&str> = base.iter().map(String::as_str).collect();

    // Before the policies are applied: everything works, and `policy check` already knows
    // which of today's flows the new policies would break.
    let agent = AgentProcess::start(&base);
    let answered = tokio::task::block_in_place(|| engine_talks(&hosts));
    assert_eq!(answered, PORTS, "no enforcement yet");
    let before = flows_by_port(&agent).await;
    assert!(
        PORTS.iter().all(|p| before.contains_key(p)),
        "{:?}",
        before.keys()
    );
    let socket = agent.socket_path().to_str().unwrap().to_owned();
    let (code, check) = flowd(&[
        "policy",
        "check",
        "--policy-file",
        policies.to_str().unwrap(),
        "--metadata-file",
        cluster.to_str().unwrap(),
        "--socket",
        &socket,
        "--since",
        "1h",
    ]);
    assert_eq!(code, 1, "check reports findings with exit code 1: {check}");
    assert!(
        check.contains("TCP/42001") && check.contains("TCP/42002"),
        "{check}"
    );
    assert!(!check.contains("TCP/7070"), "{check}");
    assert!(
        check.contains("fmeserver/default-deny-fmeserver"),
        "{check}"
    );
    let (code, recommended) = flowd(&[
        "policy",
        "recommend",
        "--metadata-file",
        cluster.to_str().unwrap(),
        "--socket",
        &socket,
        "--since",
        "1h",
        "--namespace",
        "fmeserver",
        "--format",
        "calico",
    ]);
    assert_eq!(code, 0, "{recommended}");
    assert!(
        recommended.contains("42001:42002"),
        "the missing range is proposed:\n{recommended}"
    );
    assert!(agent.terminate().success());

    // The policies go live: the CNI (nftables here) enforces them, flowd is told about them.
    hosts.b.nft(ENFORCE_SEED_POLICIES).expect("nftables");
    let mut args = base.to_vec();
    args.extend(["--policy-file", policies.to_str().unwrap()]);
    let agent = AgentProcess::start(&args);
    let answered = tokio::task::block_in_place(|| engine_talks(&hosts));
    assert_eq!(
        answered,
        [7070],
        "the engine's jobs on 42001/42002 now fail"
    );
    let after = flows_by_port(&agent).await;

    for port in [42001, 42002] {
        let denied = after[&port]
            .iter()
            .find(|f| f.verdict == pb::Verdict::Denied as i32)
            .unwrap_or_else(|| panic!("port {port} not denied: {:?}", after[&port]));
        let policy = denied.policy.as_ref().expect("the deciding policy");
        assert_eq!(
            (
                policy.namespace.as_str(),
                policy.name.as_str(),
                policy.rule_index,
                policy.tier.as_str()
            ),
            ("fmeserver", "default-deny-fmeserver", -1, "default"),
        );
        assert_eq!(denied.drop_reason, "NETFILTER_DROP");
        let source = denied.source.as_ref().unwrap();
        assert_eq!(
            source.workload.as_ref().map(|w| w.name.as_str()),
            Some("engine-standard-group")
        );
        assert_eq!(denied.destination.as_ref().unwrap().name, "core-0");
    }
    let allowed = after[&7070]
        .iter()
        .find(|f| f.verdict == pb::Verdict::Forwarded as i32)
        .expect("7070 forwarded");
    let ingress = allowed
        .ingress
        .as_ref()
        .and_then(|i| i.policy.as_ref())
        .expect("ingress policy");
    assert_eq!(
        (ingress.name.as_str(), ingress.rule_index),
        ("core-fmeserver", 0)
    );

    // The one command: what was denied, between which workloads, by which policy and rule.
    let socket = agent.socket_path().to_str().unwrap().to_owned();
    let (code, dump) = flowd(&[
        "dump",
        "--socket",
        &socket,
        "--verdict",
        "denied",
        "--since",
        "1h",
        "-o",
        "wide",
    ]);
    assert_eq!(code, 0, "{dump}");
    assert!(
        dump.contains("fmeserver/default-deny-fmeserver#-1"),
        "{dump}"
    );
    assert!(
        dump.contains(":42001") && dump.contains(":42002") && !dump.contains(":7070"),
        "{dump}"
    );
    let (_, by_policy) = flowd(&[
        "dump",
        "--socket",
        &socket,
        "--policy",
        "fmeserver/default-deny-fmeserver",
        "--since",
        "1h",
        "-o",
        "json",
    ]);
    assert!(by_policy.lines().count() >= 2, "{by_policy}");
    assert!(agent.terminate().success());
}

/// The story after the policies went live: the core serving, the CNI enforcing, and the
/// agent's arguments with the policies.
fn policies_live(tag: &str) -> (TwoHosts, Vec<std::thread::JoinHandle<()>>, Vec<String>) {
    let hosts = TwoHosts::create(tag).expect("testbed");
    let servers = serve(&hosts);
    hosts.b.nft(ENFORCE_SEED_POLICIES).expect("nftables");
    let mut args = core_agent_args(&hosts);
    args.extend([
        "--policy-file".to_owned(),
        data("policies.yaml").to_str().unwrap().to_owned(),
    ]);
    (hosts, servers, args)
}

/// The agent on the core's side, reporting fast, with the seed's pods.
fn core_agent_args(hosts: &TwoHosts) -> Vec<String> {
    [
        "--netns",
        hosts.b.path().to_str().unwrap(),
        "--active-timeout",
        "1s",
        "--sweep-interval",
        "200ms",
        "--unanswered-timeout",
        "500ms",
        "--metadata-file",
        data("cluster.yaml").to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Resolves when the page has loaded what it asked for (body data-state), rejects with its
/// error line.
/// Rows of the flows table, as the cells' text.
const TABLE_ROWS: &str = "[...document.querySelectorAll('#flows-table tbody tr')]\
    .map((tr) => [...tr.cells].map((td) => td.textContent))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_story_on_the_page() {
    if !privileged("the_seed_story_on_the_page") {
        return;
    }
    let (hosts, _servers, base) = policies_live("seedui");
    // An admin policy that passes everything on to NetworkPolicy: the story's outcome stays,
    // and the board lists it with its kind.
    let admin = tempfile::tempdir().unwrap();
    let admin_file = admin.path().join("admin.yaml");
    std::fs::write(
        &admin_file,
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n\
         metadata: {name: pass-to-namespaces}\n\
         spec:\n  priority: 10\n  subject: {namespaces: {}}\n  ingress:\n\
         \x20\x20- {name: pass-all, action: Pass, from: [{namespaces: {}}]}\n",
    )
    .unwrap();
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend(["--ui-listen", "127.0.0.1:0"]);
    args.extend(["--policy-file", admin_file.to_str().unwrap()]);
    let mut agent = AgentProcess::start(&args);
    let answered = tokio::task::block_in_place(|| engine_talks(&hosts));
    assert_eq!(answered, [7070]);
    let recorded = flows_by_port(&agent).await;
    assert!(recorded.contains_key(&42001), "{:?}", recorded.keys());
    let url = agent.logged_field("UI listening", "url");

    tokio::task::block_in_place(|| {
        let mut browser = flowd::browser::Browser::launch(1400, 1000);
        browser.navigate(&url);
        browser.eval(flowd::browser::PAGE_READY);

        // The engine-to-core edge, drawn red: one of its ports was denied.
        let edge = browser.eval(
            "(() => { const e = flowd.cy.edges().filter((e) => \
                e.source().id().includes('engine-standard-group') && \
                e.target().id().includes('core'))[0]; \
              if (!e) return null; \
              const p = e.renderedMidpoint(); \
              const r = flowd.cy.container().getBoundingClientRect(); \
              return { verdict: e.data('verdict'), colour: e.style('line-color'), \
                       label: e.data('label'), x: r.left + p.x, y: r.top + p.y }; })()",
        );
        assert_eq!(edge["verdict"], "VERDICT_DENIED", "{edge}");
        assert_eq!(
            edge["colour"], "rgb(214,39,40)",
            "drawn in the denied colour: {edge}"
        );
        assert!(
            edge["label"].as_str().unwrap().contains("42001-42002"),
            "{edge}"
        );

        // Clicking it opens the side panel with the deciding policy and rule.
        browser.click(edge["x"].as_f64().unwrap(), edge["y"].as_f64().unwrap());
        let panel = browser.eval(
            "new Promise((resolve) => { const check = () => { \
                const panel = document.getElementById('panel'); \
                const flows = panel.querySelector('.edge-flows'); \
                if (!panel.hidden && flows && !flows.textContent.startsWith('loading')) \
                    resolve(panel.textContent); \
                else setTimeout(check, 25); }; check(); })",
        );
        let panel = panel.as_str().unwrap();
        for expected in [
            "default-deny-fmeserver",
            "-1 (end of tier",
            "7070, 42001-42002",
            "NETFILTER_DROP",
            "core-fmeserver",
            "kind: NetworkPolicy",
        ] {
            assert!(
                panel.contains(expected),
                "{expected:?} not in the panel:\n{panel}"
            );
        }
        let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-seed.png");
        browser.screenshot(&screenshot);
        eprintln!("screenshot: {}", screenshot.display());

        // The recommendation for the denied side, checked against the history.
        browser.click_element("#panel button.recommend");
        let proposal = browser.eval(
            "new Promise((resolve) => { const check = () => { \
                const box = document.querySelector('#panel .proposal'); \
                if (box.dataset.state) resolve({ state: box.dataset.state, text: box.textContent, \
                    yaml: (box.querySelector('.proposal-yaml') || {}).textContent || '' }); \
                else setTimeout(check, 25); }; check(); })",
        );
        assert_eq!(proposal["state"], "ready", "{proposal}");
        let yaml = proposal["yaml"].as_str().unwrap();
        assert!(
            yaml.contains("projectcalico.org/v3") && yaml.contains("42001:42002"),
            "a Calico policy for the missing range:\n{yaml}"
        );
        let text = proposal["text"].as_str().unwrap();
        assert!(
            text.contains("2 denied connections allowed, 0 still denied"),
            "{text}"
        );
        assert!(text.contains("0 newly denied"), "{text}");
        browser.screenshot(&screenshot.with_file_name("ui-seed-proposal.png"));

        // The board lists the admin policy with its kind (its Pass left the denial to the
        // NetworkPolicy tier, as the panel above says).
        let admin_row = browser.eval(
            "[...document.querySelectorAll('#policy-board tr[data-policy=\"pass-to-namespaces\"] td')].map((td) => td.textContent)",
        );
        assert_eq!(
            admin_row[1], "AdminNetworkPolicy",
            "the admin policy on the board: {admin_row}"
        );
        assert_eq!(admin_row[2], "adminnetworkpolicy", "{admin_row}");

        // The policy board counts the denial.
        let denied = browser.eval(
            "document.querySelector('#policy-board tr[data-policy=\"fmeserver/default-deny-fmeserver\"] td.denied').textContent",
        );
        assert!(
            denied.as_str().unwrap().parse::<u64>().unwrap() >= 1,
            "denials on the board: {denied}"
        );

        // The flows table filtered by port, through the form as a user types it.
        browser.eval("document.querySelector('#filters [name=port]').value = '42001'");
        browser.click_element("#filters button[type=submit]");
        browser.eval(flowd::browser::PAGE_READY);
        let rows = browser.eval(TABLE_ROWS);
        let rows = rows.as_array().unwrap();
        assert!(!rows.is_empty(), "flows on 42001");
        for row in rows {
            assert_eq!(row[4], "42001", "only port 42001: {row}");
        }
        assert!(
            rows.iter().any(|row| row[5] == "denied"
                && row[7]
                    .as_str()
                    .unwrap()
                    .contains("fmeserver/default-deny-fmeserver rule -1")),
            "{rows:?}"
        );
        // Collapsed, the namespace is one node and the denial stays visible on it; a click on
        // that node opens it again.
        browser.eval("document.getElementById('collapse-all').click()");
        let collapsed = browser.eval(
            "(() => { const n = flowd.cy.$id('ns:fmeserver'); \
              const loop = flowd.cy.edges().filter((e) => e.source().id() === 'ns:fmeserver' \
                && e.target().id() === 'ns:fmeserver')[0]; \
              const p = n.renderedPosition(); const r = flowd.cy.container().getBoundingClientRect(); \
              return { collapsed: n.hasClass('collapsed'), loop: loop ? loop.data('verdict') : null, \
                       x: r.left + p.x, y: r.top + p.y }; })()",
        );
        assert_eq!(collapsed["collapsed"], true, "{collapsed}");
        assert_eq!(collapsed["loop"], "VERDICT_DENIED", "{collapsed}");
        browser.click(
            collapsed["x"].as_f64().unwrap(),
            collapsed["y"].as_f64().unwrap(),
        );
        let opened = browser.eval(
            "flowd.cy.nodes().filter((n) => n.id().includes('engine-standard-group')).length",
        );
        assert_eq!(opened, 1, "a click opened the namespace again");

        // Live: with the box ticked the table follows, and new connections appear as they end.
        browser.eval("document.querySelector('#filters [name=port]').value = '7070'");
        browser.eval("document.querySelector('#filters [name=follow]').checked = true");
        browser.click_element("#filters button[type=submit]");
        browser.eval(flowd::browser::PAGE_READY);
        // Rows of connections made from now on: their cursors are past the history's last.
        let before = browser.eval(
            "fetch('/api/v1/status').then((r) => r.json()).then((s) => Number(s.lastCursor || 0))",
        );
        assert_eq!(engine_talks(&hosts), [7070]);
        let live = browser.eval(&format!(
            "new Promise((resolve) => {{ const check = () => {{ \
                const row = [...document.querySelectorAll('#flows-table tbody tr')] \
                  .find((tr) => Number(tr.dataset.cursor) > {before}); \
                if (row) resolve(row.cells[4].textContent); \
                else setTimeout(check, 25); }}; check(); }})"
        ));
        assert_eq!(live, "7070", "a new connection showed up live");

        browser.collect_events();
        assert!(
            browser.problems.is_empty(),
            "the page ran without errors or refused loads: {:?}",
            browser.problems
        );
    });
    assert!(agent.terminate().success());
}

/// Grafana's variables as a plain Prometheus evaluates them.
fn as_plain_promql(dashboard_expr: &str) -> String {
    dashboard_expr
        .replace("$__rate_interval", "1m")
        .replace("$instance", ".*")
}

/// A real Prometheus scrapes the agent of the seed story: the denial by policy and rule, the
/// drop reason and the bytes the generator sent are there to alert on, the rules load and every
/// dashboard query runs against what the agent serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_story_in_prometheus() {
    if !privileged("the_seed_story_in_prometheus") {
        return;
    }
    let (hosts, _servers, base) = policies_live("seedprom");
    // Held for the test: while it is open the kernel counts program runs, as with the sysctl.
    let _bpf_stats =
        aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS (kernel 5.8+)");
    // Nobody listens there: the exporter's families show an outage, as the alerts expect them.
    let otlp = format!("http://127.0.0.1:{}", support::free_port());
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend([
        "--metrics-listen",
        "127.0.0.1:0",
        "--flow-metric-labels",
        "bytes=source_workload,destination_namespace",
        "--otlp-endpoint",
        &otlp,
    ]);
    let mut agent = AgentProcess::start(&args);
    let target = agent.logged_field("metrics listening", "addr");
    let dir = tempfile::tempdir().unwrap();
    let rules = support::prometheus::monitoring_dir().join(support::prometheus::RULES);
    let prometheus = tokio::task::block_in_place(|| {
        support::prometheus::Prometheus::start(dir.path(), &[target], &[&rules])
    });

    let answered = tokio::task::block_in_place(|| engine_talks(&hosts));
    assert_eq!(answered, [7070]);
    const DATAGRAMS: usize = 20;
    const PAYLOAD: usize = 100;
    let udp = tokio::task::block_in_place(|| {
        flowd::testbed::udp_exchange(
            &hosts,
            std::net::IpAddr::V4(flowd::testbed::HOST_B_V4),
            DATAGRAMS,
            PAYLOAD,
        )
    })
    .expect("udp exchange");
    // Each way, every datagram on the wire: payload, UDP (8) and IPv4 (20) headers.
    let sent_bytes = (2 * DATAGRAMS * (PAYLOAD + 28)) as f64;

    tokio::task::block_in_place(|| {
        prometheus.expect_value(
            "sum(flowd_policy_denials_total{verdict=\"denied\",policy_kind=\"CalicoNetworkPolicy\",\
             policy_namespace=\"fmeserver\",policy=\"default-deny-fmeserver\",rule=\"-1\",\
             tier=\"default\"})",
            |v| v >= 2.0,
            "the engine's two denied ports, by policy and rule",
            "flowd_policy_denials_total",
        );
        prometheus.expect_value(
            "sum(flowd_kernel_dropped_packets_total{reason=\"NETFILTER_DROP\"})",
            |v| v >= 2.0,
            "the CNI's drops, by reason",
            "flowd_kernel_dropped_packets_total",
        );
        let udp_port = udp.server.port();
        let bytes_expr = "sum(flowd_flow_bytes_total{protocol=\"UDP\",\
            source_workload=\"engine-standard-group\",destination_namespace=\"fmeserver\"})";
        let bytes = prometheus.value_when(bytes_expr, Duration::from_secs(30), |v| v >= sent_bytes);
        assert_eq!(
            bytes,
            sent_bytes,
            "UDP bytes to port {udp_port}, both ways: {:?}",
            prometheus.query("flowd_flow_bytes_total")
        );

        // The rules load and evaluate without error against what the agent serves.
        let groups = prometheus.api("rules", &[]);
        let loaded: Vec<serde_json::Value> = groups["groups"]
            .as_array()
            .expect("rule groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        assert!(loaded.len() >= 8, "{groups}");
        for rule in &loaded {
            assert_ne!(rule["health"], "err", "{rule}");
        }

        // Every dashboard query is valid PromQL, and every flowd metric the rules and the
        // dashboard name is one the agent serves.
        for expr in support::prometheus::dashboard_queries() {
            prometheus.query(&as_plain_promql(&expr));
        }
        prometheus.expect_value(
            "sum(flowd_bpf_program_runs_total)",
            |v| v > 0.0,
            "the kernel counted flowd's program runs while the test held BPF stats on",
            "flowd_bpf_program_runs_total",
        );
        prometheus.expect_value(
            "count(flowd_export_lag_records)",
            |v| v > 0.0,
            "the OTLP exporter's lag is served",
            "flowd_export_lag_records",
        );
        let served: std::collections::BTreeSet<String> = prometheus
            .api("label/__name__/values", &[])
            .as_array()
            .expect("names")
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect();
        let dir = support::prometheus::monitoring_dir();
        let mut named = support::prometheus::metric_names(
            &std::fs::read_to_string(dir.join(support::prometheus::RULES)).unwrap(),
        );
        named.extend(support::prometheus::metric_names(
            &std::fs::read_to_string(dir.join(support::prometheus::DASHBOARD)).unwrap(),
        ));
        let missing: Vec<&String> = named.iter().filter(|n| !served.contains(*n)).collect();
        assert!(missing.is_empty(), "named but not served: {missing:?}");
    });
    assert!(agent.terminate().success());
}
