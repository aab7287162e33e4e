//! The agent as the chart runs it (as root): only the capabilities the DaemonSet adds, no
//! privilege escalation, a BPF filesystem it did not mount, in the network namespace it watches;
//! and the DaemonSet's probe commands against it.

use std::{process::Command, time::Duration};

use flowd::testbed::{self, TwoHosts};
use serde_json::json;

use super::chart;
use super::support::{collect_until, follow, privileged, run_flowd, AgentProcess, PinPath};

/// The capability numbers of linux/capability.h for the names a chart may grant.
fn capability_number(name: &str) -> u32 {
    match name {
        "NET_ADMIN" => 12,
        "SYS_ADMIN" => 21,
        "SYSLOG" => 34,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("capability {other} has no number here; add it"),
    }
}

fn granted_capabilities() -> Vec<String> {
    let container = chart::render(&json!({}))
        .expect("the chart renders")
        .agent_container();
    container["securityContext"]["capabilities"]["add"]
        .as_sequence()
        .expect("the DaemonSet adds capabilities")
        .iter()
        .map(|c| c.as_str().expect("a capability name").to_owned())
        .collect()
}

/// nsenter into `hosts.a`'s network namespace (the pod's hostNetwork), then setpriv: the bounding
/// set, and so root's capabilities, limited to `capabilities`; nothing inherited or ambient;
/// no_new_privs as `allowPrivilegeEscalation: false` sets it.
fn launcher(hosts: &TwoHosts, capabilities: &[String]) -> Vec<String> {
    let bounding: Vec<String> = capabilities
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    vec![
        "nsenter".into(),
        format!("--net={}", hosts.a.path().display()),
        "setpriv".into(),
        "--bounding-set".into(),
        format!("-all,{}", bounding.join(",")),
        "--inh-caps".into(),
        "-all".into(),
        "--ambient-caps".into(),
        "-all".into(),
        "--no-new-privs".into(),
        "--".into(),
    ]
}

fn effective_capabilities(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the agent's status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff");
    u64::from_str_radix(hex.trim(), 16).expect("hex")
}

/// The DaemonSet's probe command, pointed at `socket` instead of the node's.
fn probe(name: &str, socket: &str) -> (i32, String) {
    let container = chart::render(&json!({}))
        .expect("the chart renders")
        .agent_container();
    let command: Vec<String> = container[name]["exec"]["command"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{name} is an exec probe"))
        .iter()
        .map(|a| a.as_str().expect("string arguments").to_owned())
        .collect();
    assert_eq!(command[0], "flowd");
    let position = command
        .iter()
        .position(|a| a == "--socket")
        .expect("the probe names the socket");
    let mut args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    args[position] = socket;
    run_flowd(&args)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_counts_with_only_the_capabilities_the_chart_grants() {
    if !privileged("the_agent_counts_with_only_the_capabilities_the_chart_grants") {
        return;
    }
    let capabilities = granted_capabilities();
    let hosts = TwoHosts::create("chartcaps").expect("test namespaces");
    let pin_dir = tempfile::tempdir().unwrap();
    let pins = PinPath::mounted(pin_dir.path());

    let (code, output) = probe("readinessProbe", "/nonexistent/flowd.sock");
    assert_eq!(code, 1, "no agent, the probe fails: {output}");
    assert!(output.contains("/nonexistent/flowd.sock"), "{output}");

    let launcher = launcher(&hosts, &capabilities);
    let launcher: Vec<&str> = launcher.iter().map(String::as_str).collect();
    let agent = AgentProcess::start_launched(
        &launcher,
        &["--interface", testbed::VETH, "--pin-path", pins.arg()],
    );
    let expected = capabilities
        .iter()
        .fold(0u64, |mask, c| mask | 1 << capability_number(c));
    assert_eq!(
        effective_capabilities(agent.pid()),
        expected,
        "the agent runs with exactly {capabilities:?}"
    );

    let socket = agent.socket_path().to_str().unwrap().to_owned();
    for name in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let (code, output) = probe(name, &socket);
        assert_eq!(code, 0, "{name}: {output}");
        assert!(output.contains("SERVING"), "{name}: {output}");
    }

    let mut client = agent.client().await;
    let status = client
        .get_status(flowd::api::proto::v1::GetStatusRequest {})
        .await
        .expect("GetStatus")
        .into_inner();
    for program in ["flowd_sock_create", "flowd_kfree_skb"] {
        assert!(
            status.programs.iter().any(|p| p.contains(program)),
            "{program} program loaded without more privileges: {:?}",
            status.programs
        );
    }
    let mut stream = follow(&mut client).await;
    let exchange =
        testbed::tcp_exchange(&hosts, testbed::HOST_B_V4.into(), 1000, 3000).expect("TCP exchange");
    let totals = collect_until(&mut stream, Duration::from_secs(15), |t| {
        t.iter()
            .any(|(id, t)| id.source == exchange.client && t.ended())
    })
    .await;
    let (_, connection) = totals
        .iter()
        .find(|(id, _)| id.source == exchange.client)
        .expect("the connection was recorded");
    assert!(
        connection.request_bytes > 1000 && connection.reply_bytes > 3000,
        "both directions counted (payload plus headers): {connection:?}"
    );
    let exit = agent.terminate();
    assert!(
        exit.success(),
        "a clean stop with the chart's capabilities: {exit:?}"
    );
}

#[test]
fn without_a_needed_capability_the_agent_names_it() {
    if !privileged("without_a_needed_capability_the_agent_names_it") {
        return;
    }
    let hosts = TwoHosts::create("chartnocap").expect("test namespaces");
    let pin_dir = tempfile::tempdir().unwrap();
    let pins = PinPath::mounted(pin_dir.path());
    let socket_dir = tempfile::tempdir().unwrap();
    let without: Vec<String> = granted_capabilities()
        .into_iter()
        .filter(|c| c != "NET_ADMIN")
        .collect();
    let launcher = launcher(&hosts, &without);
    let output = Command::new(&launcher[0])
        .args(&launcher[1..])
        .arg(super::support::flowd_binary())
        .args([
            "run",
            "--interface",
            testbed::VETH,
            "--pin-path",
            pins.arg(),
        ])
        .arg("--socket")
        .arg(socket_dir.path().join("flowd.sock"))
        .arg("--store-path")
        .arg(socket_dir.path().join("flows.redb"))
        .output()
        .expect("run the agent");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the agent refuses to start: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        text.contains("CAP_NET_ADMIN"),
        "the missing capability is named: {text}"
    );
}
