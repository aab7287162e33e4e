//! The CLI's error paths: bad settings and a missing agent give clear messages, never a panic.

mod support;

use std::process::Command;

fn flowd(args: &[&str]) -> (bool, String) {
    let (code, text) = support::run_flowd(args);
    (code == 0, text)
}

#[test]
fn bad_config_file_names_file_key_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flowd.yaml");
    std::fs::write(&path, "activeTimeout: 5s\nflowMapEntries: many\n").unwrap();
    let (ok, text) = flowd(&["run", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("flowd.yaml"), "{text}");
    assert!(text.contains("flowMapEntries"), "{text}");
}

#[test]
fn missing_config_file_is_named() {
    let (ok, text) = flowd(&["run", "--config", "/nonexistent/flowd.yaml"]);
    assert!(!ok);
    assert!(text.contains("/nonexistent/flowd.yaml"), "{text}");
}

#[test]
fn flags_are_validated_before_anything_loads() {
    let (ok, text) = flowd(&["run", "--ring-buffer-bytes", "1000"]);
    assert!(!ok);
    assert!(
        text.contains("ringBufferBytes") && text.contains("power of two"),
        "{text}"
    );
    let (ok, text) = flowd(&["run", "--active-timeout", "soon"]);
    assert!(!ok);
    assert!(text.contains("--active-timeout"), "{text}");
}

#[test]
fn flags_override_the_file() {
    // A file asking for an invalid ring size is rescued by a valid flag: flags win.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flowd.yaml");
    std::fs::write(&path, "ringBufferBytes: 1000\n").unwrap();
    let (ok, text) = flowd(&[
        "run",
        "--config",
        path.to_str().unwrap(),
        "--ring-buffer-bytes",
        "65536",
        "--netns",
        "/nonexistent/netns",
    ]);
    assert!(!ok);
    assert!(!text.contains("ringBufferBytes"), "{text}");
}

#[test]
fn dump_without_agent_says_how_to_fix_it() {
    let (ok, text) = flowd(&["dump", "--socket", "/nonexistent/flowd.sock"]);
    assert!(!ok);
    assert!(
        text.contains("no flowd agent answers on /nonexistent/flowd.sock"),
        "{text}"
    );
    assert!(text.contains("flowd run"), "{text}");
    let (ok, text) = flowd(&["status", "--socket", "/nonexistent/flowd.sock"]);
    assert!(!ok);
    assert!(text.contains("no flowd agent"), "{text}");
}

#[test]
fn unprivileged_run_names_the_missing_capabilities() {
    if !nix::unistd::geteuid().is_root() {
        // Already unprivileged: run directly.
        let (ok, text) = flowd(&["run", "--socket", "/tmp/flowd-unpriv.sock"]);
        assert!(!ok);
        assert!(
            text.contains("CAP_NET_ADMIN") || text.contains("CAP_BPF"),
            "{text}"
        );
        return;
    }
    // As root: drop to nobody without capabilities.
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(support::flowd_binary())
        .args(["run", "--socket", "/tmp/flowd-unpriv.sock"])
        .output()
        .expect("setpriv (util-linux)");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        text.contains("CAP_NET_ADMIN") && text.contains("root"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn help_lists_every_subcommand() {
    let (ok, text) = flowd(&["--help"]);
    assert!(ok);
    for sub in ["run", "dump", "status", "demo"] {
        assert!(text.contains(sub), "{text}");
    }
    for sub in ["run", "dump", "status", "demo"] {
        let (ok, _) = flowd(&[sub, "--help"]);
        assert!(ok, "{sub} --help");
    }
}

#[test]
fn the_relay_refuses_what_it_cannot_serve_and_names_the_fix() {
    let (ok, text) = flowd(&["relay"]);
    assert!(!ok);
    assert!(
        text.contains("--peer") && text.contains("--kubernetes-service"),
        "{text}"
    );
    let (ok, text) = flowd(&[
        "relay",
        "--peer",
        "127.0.0.1:4245",
        "--listen",
        "0.0.0.0:4246",
    ]);
    assert!(!ok, "beyond loopback without TLS: {text}");
    assert!(
        text.contains("--tls-client-ca") && text.contains("--insecure-listen"),
        "{text}"
    );
    let (ok, text) = flowd(&["relay", "--kubernetes-service", "no-slash"]);
    assert!(!ok);
    assert!(text.contains("NAMESPACE/NAME"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.yaml");
    std::fs::write(&path, "peers: [127.0.0.1:4245]\nconnectTimeout: soon\n").unwrap();
    let (ok, text) = flowd(&["relay", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.contains("relay.yaml") && text.contains("connectTimeout"),
        "the file and the key: {text}"
    );
    std::fs::write(&path, "peers: [127.0.0.1:4245]\nlisten: 0.0.0.0:4246\n").unwrap();
    let (ok, text) = flowd(&["relay", "--config", path.to_str().unwrap()]);
    assert!(!ok, "the file's settings are checked as flags are: {text}");
    assert!(text.contains("--insecure-listen"), "{text}");
}

/// The private key's body, line by line: no line of it may show up in a log.
fn key_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() >= 16)
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn no_key_material_reaches_the_log_even_at_trace_level() {
    use std::process::Stdio;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    support::tls::certificates(dir.path());
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let tls = [
        "--tls-cert",
        &p("server.pem"),
        "--tls-key",
        &p("server.key"),
        "--tls-client-ca",
        &p("ca.pem"),
    ];
    let mut relay = Command::new(support::flowd_binary())
        .args(["relay", "--peer", "127.0.0.1:9", "--listen", "127.0.0.1:0"])
        .args(tls)
        .args([
            "--peer-tls-ca",
            &p("ca.pem"),
            "--peer-tls-cert",
            &p("relay.pem"),
        ])
        .args(["--peer-tls-key", &p("relay.key"), "--log-level", "trace"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = support::log_lines(&mut relay, "relay");
    let mut log = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the relay says it is ready");
        let ready = line
            .contains("flowd relay ready")
            .then(|| line.split("listen=").nth(1))
            .flatten()
            .and_then(|rest| rest.split_whitespace().next())
            .map(|addr| addr.parse::<std::net::SocketAddr>().unwrap());
        log.push(line);
        if let Some(addr) = ready {
            break addr;
        }
    };
    // A handshake with a client certificate and one without, so TLS code paths log what they log.
    let with_cert = flowd::api::client::ClientTls {
        ca: Some(p("ca.pem").into()),
        cert: Some(p("client.pem").into()),
        key: Some(p("client.key").into()),
        server_name: None,
    };
    let mut client = flowd::api::client::connect_tcp(addr, Some(&with_cert))
        .await
        .expect("a client with a certificate");
    client
        .get_status(flowd::api::proto::v1::GetStatusRequest {})
        .await
        .expect("status through TLS");
    assert!(support::tls::refused(addr, None).await);
    relay.kill().unwrap();
    relay.wait().unwrap();
    log.extend(lines.iter());
    let log = log.join("\n");
    assert!(log.contains("TRACE"), "traced at all: {log}");
    for key in ["server.key", "relay.key", "client.key", "ca.key"] {
        for line in key_lines(&dir.path().join(key)) {
            assert!(!log.contains(&line), "{key} appears in the log");
        }
    }

    // A key file that is not a key: the error names the file, never its content.
    let secret = "c2VjcmV0LWtleS1tYXRlcmlhbC10aGF0LW11c3Qtbm90LWxlYWs";
    std::fs::write(
        dir.path().join("bad.key"),
        format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    let (ok, text) = flowd(&[
        "relay",
        "--peer",
        "127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &p("server.pem"),
        "--tls-key",
        &p("bad.key"),
        "--tls-client-ca",
        &p("ca.pem"),
        "--log-level",
        "trace",
    ]);
    assert!(!ok, "a bad key is refused: {text}");
    assert!(
        text.contains("bad.key") && !text.contains("flowd relay ready"),
        "refused at start, naming the file: {text}"
    );
    assert!(!text.contains(secret), "the key's content leaked: {text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn a_policy_flowd_cannot_evaluate_is_named_with_its_kind_and_file_never_silently_applied() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("admin.yaml");
    std::fs::write(
        &policies,
        "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\n\
         metadata: {name: cluster-wide-deny}\nspec: {priority: 10}\n\
         ---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: deny-all, namespace: shop}\nspec: {podSelector: {}}\n",
    )
    .unwrap();
    let flows = dir.path().join("flows.jsonl");
    std::fs::write(&flows, "").unwrap();
    let (ok, text) = flowd(&[
        "policy",
        "eval",
        "--policy-file",
        policies.to_str().unwrap(),
        "--flows",
        flows.to_str().unwrap(),
    ]);
    assert!(ok, "the supported policy still loads: {text}");
    assert!(
        text.contains("warning")
            && text.contains("admin.yaml")
            && text.contains("ClusterNetworkPolicy")
            && text.contains("crd.antrea.io")
            && text.contains("cluster-wide-deny"),
        "{text}"
    );
    assert!(
        !text.contains("deny-all"),
        "the supported one is not reported: {text}"
    );
}

/// `flowd policy explain` takes the source port and the ICMP message, and says which it used;
/// kinds in the metadata file that endpoints are not made of are named once each.
#[test]
fn explain_reads_source_ports_and_icmp_types() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("calico.yaml");
    std::fs::write(
        &policies,
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n\
         metadata: {name: db, namespace: shop}\n\
         spec:\n  selector: app == 'db'\n  ingress:\n\
         \x20 - {action: Allow, protocol: ICMP, icmp: {type: 8}}\n\
         \x20 - {action: Allow, protocol: UDP, source: {ports: [53]}}\n",
    )
    .unwrap();
    let pods = dir.path().join("pods.yaml");
    std::fs::write(
        &pods,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\n\
         status: {podIP: 198.18.0.2}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: db, namespace: shop}\n",
    )
    .unwrap();
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "explain",
            "--policy-file",
            policies.to_str().unwrap(),
            "--metadata-file",
            pods.to_str().unwrap(),
            "--source",
            "198.18.0.1",
            "--destination",
            "shop/db",
        ];
        args.extend_from_slice(extra);
        flowd(&args)
    };
    let (ok, text) = explain(&["--protocol", "ICMP", "--icmp-type", "8"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("ALLOWED") && text.contains("type 8 code 0"),
        "{text}"
    );
    assert!(
        text.contains("1 object(s) of kind Deployment not read"),
        "{text}"
    );
    let (ok, text) = explain(&["--protocol", "ICMP", "--icmp-type", "13"]);
    assert!(ok && text.contains("DENIED"), "{text}");
    let (ok, text) = explain(&["--protocol", "UDP", "--port", "5353", "--source-port", "53"]);
    assert!(
        ok && text.contains("ALLOWED") && text.contains("from port 53"),
        "{text}"
    );
    let (ok, text) = explain(&["--protocol", "UDP", "--port", "5353"]);
    assert!(
        ok && text.contains("DENIED"),
        "no source port given: {text}"
    );
    let (ok, text) = explain(&["--protocol", "UDP"]);
    assert!(!ok && text.contains("--port is required for UDP"), "{text}");
    let (ok, text) = explain(&["--port", "80", "--icmp-type", "8"]);
    assert!(
        !ok && text.contains("--icmp-type: TCP is not ICMP"),
        "{text}"
    );
}

/// `flowd policy check` with an AdminNetworkPolicy: the recorded flow it would deny is named
/// with the policy, the rule index and the rule's name; exit 1.
#[test]
fn check_names_the_admin_policy_and_rule_that_would_deny() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("admin.yaml");
    std::fs::write(
        &policies,
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n\
         metadata: {name: guard-db}\n\
         spec:\n  priority: 5\n  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: shop}}}\n\
         \x20 ingress:\n\
         \x20 - {name: no-postgres-from-outside, action: Deny, from: [{namespaces: {}}], \
         ports: [{portNumber: {port: 5432}}]}\n",
    )
    .unwrap();
    let pods = dir.path().join("pods.yaml");
    std::fs::write(
        &pods,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop}\nstatus: {podIP: 198.18.0.2}\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: front}\nstatus: {podIP: 198.18.0.1}\n",
    )
    .unwrap();
    let flows = dir.path().join("flows.jsonl");
    std::fs::write(
        &flows,
        "{\"protocol\":6,\"source\":{\"ip\":\"198.18.0.1\",\"port\":40000},\"destination\":{\"ip\":\"198.18.0.2\",\"port\":5432}}\n\
         {\"protocol\":6,\"source\":{\"ip\":\"198.18.0.1\",\"port\":40001},\"destination\":{\"ip\":\"198.18.0.2\",\"port\":80}}\n",
    )
    .unwrap();
    let (ok, text) = flowd(&[
        "policy",
        "check",
        "--policy-file",
        policies.to_str().unwrap(),
        "--metadata-file",
        pods.to_str().unwrap(),
        "--flows",
        flows.to_str().unwrap(),
    ]);
    assert!(!ok, "a denial exits 1: {text}");
    assert!(
        text.contains("TCP/5432")
            && text.contains("AdminNetworkPolicy guard-db")
            && text.contains("rule 0 (no-postgres-from-outside)"),
        "{text}"
    );
    assert!(!text.contains("TCP/80:"), "port 80 is not denied: {text}");
}
