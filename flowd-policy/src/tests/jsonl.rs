//! The `flowd policy eval` JSON-lines format.

use super::helpers::engine;
use crate::jsonl::{eval_line, run, to_json_line};
use crate::pods::StaticPods;

const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: prod, labels: {app: db}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.0.2}
"#;

const POLICIES: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: global-deny-udp}
spec:
  order: 1
  selector: all()
  ingress:
  - action: Deny
    protocol: UDP
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}]
"#;

fn pods() -> StaticPods {
    let l = StaticPods::load_str(PODS, "pods.yaml");
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    l.pods
}

fn line(input: &str) -> String {
    to_json_line(&eval_line(&engine(POLICIES), &pods(), input))
}

#[test]
fn allowed_line_has_stable_fields() {
    assert_eq!(
        line(r#"{"source":"prod/web","destination":"prod/db","port":5432,"protocol":"TCP"}"#),
        r#"{"source":"prod/web","destination":"prod/db","port":5432,"protocol":"TCP","allowed":true,"egress":{"allowed":true,"policy":null,"kind":null,"tier":null,"rule":null},"ingress":{"allowed":true,"policy":"prod/db","kind":"NetworkPolicy","tier":"default","rule":0}}"#
    );
}

#[test]
fn global_policy_is_named_without_namespace() {
    let out = line(r#"{"source":"prod/web","destination":"prod/db","port":5432,"protocol":"UDP"}"#);
    assert!(out.contains(r#""ingress":{"allowed":false,"policy":"global-deny-udp","kind":"GlobalNetworkPolicy","tier":"default","rule":0}"#), "{out}");
}

#[test]
fn protocol_defaults_to_tcp_and_is_echoed() {
    let out = line(r#"{"source":"prod/web","destination":"prod/db","port":5432}"#);
    assert!(out.contains(r#""protocol":"TCP","allowed":true"#), "{out}");
}

#[test]
fn ip_addresses_resolve_to_pods_or_world() {
    let out = line(r#"{"source":"10.0.0.1","destination":"10.0.0.2","port":5432}"#);
    assert!(out.contains(r#""allowed":true"#), "{out}");
    let out = line(r#"{"source":"192.0.2.7","destination":"10.0.0.2","port":5432}"#);
    assert!(out.contains(r#""allowed":false"#), "{out}");
    assert!(
        out.contains(r#""egress":{"allowed":true,"policy":null"#),
        "{out}"
    );
}

#[test]
fn extra_fields_pass_through() {
    let out = line(r#"{"id":"flow-7","source":"prod/web","destination":"prod/db","port":5432}"#);
    assert!(out.ends_with(r#""id":"flow-7"}"#), "{out}");
}

#[test]
fn icmp_needs_no_port() {
    let out = line(r#"{"source":"prod/web","destination":"prod/db","protocol":"ICMP"}"#);
    assert!(out.contains(r#""allowed":false"#), "{out}");
    assert!(!out.contains("error"), "{out}");
}

const ICMP_AND_SOURCE_PORTS: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    protocol: ICMP
    icmp: {type: 8}
  - action: Allow
    protocol: UDP
    source: {ports: [53]}
"#;

#[test]
fn source_port_and_icmp_message_are_evaluated_and_echoed() {
    let engine = engine(ICMP_AND_SOURCE_PORTS);
    let eval = |input: &str| to_json_line(&eval_line(&engine, &pods(), input));
    let ping = eval(
        r#"{"source":"prod/web","destination":"prod/db","protocol":"ICMP","icmpType":8,"icmpCode":0}"#,
    );
    assert!(ping.contains(r#""allowed":true"#), "{ping}");
    assert!(ping.contains(r#""icmpType":8"#), "echoed: {ping}");
    let unreachable =
        eval(r#"{"source":"prod/web","destination":"prod/db","protocol":"ICMP","icmpType":3}"#);
    assert!(unreachable.contains(r#""allowed":false"#), "{unreachable}");
    let dns = eval(
        r#"{"source":"prod/web","destination":"prod/db","protocol":"UDP","port":5353,"sourcePort":53}"#,
    );
    assert!(dns.contains(r#""allowed":true"#), "{dns}");
    let other = eval(
        r#"{"source":"prod/web","destination":"prod/db","protocol":"UDP","port":5353,"sourcePort":54}"#,
    );
    assert!(other.contains(r#""allowed":false"#), "{other}");
    let unknown =
        eval(r#"{"source":"prod/web","destination":"prod/db","protocol":"UDP","port":5353}"#);
    assert!(unknown.contains(r#""allowed":false"#), "{unknown}");
}

#[test]
fn bad_lines_report_errors() {
    let cases = [
        ("not json", "invalid JSON"),
        ("[1,2]", "not a JSON object"),
        (r#"{"destination":"prod/db","port":1}"#, "source is missing"),
        (
            r#"{"source":"prod/nope","destination":"prod/db","port":1}"#,
            "unknown pod",
        ),
        (
            r#"{"source":"prod/web","destination":"what","port":1}"#,
            "neither NAMESPACE/POD nor an IP",
        ),
        (
            r#"{"source":"prod/web","destination":"prod/db"}"#,
            "port is missing",
        ),
        (
            r#"{"source":"prod/web","destination":"prod/db","port":70000}"#,
            "outside 0-65535",
        ),
        (
            r#"{"source":"prod/web","destination":"prod/db","port":1,"protocol":"QUIC"}"#,
            "unknown protocol",
        ),
        (
            r#"{"source":7,"destination":"prod/db","port":1}"#,
            "expected a string",
        ),
        (
            r#"{"source":"prod/web","destination":"prod/db","port":1,"sourcePort":65536}"#,
            "sourcePort: 65536 is outside 0-65535",
        ),
        (
            r#"{"source":"prod/web","destination":"prod/db","protocol":"ICMP","sourcePort":1}"#,
            "sourcePort: ICMP has no ports",
        ),
        (
            r#"{"source":"prod/web","destination":"prod/db","port":1,"icmpType":8}"#,
            "icmpType: TCP is not ICMP or ICMPv6",
        ),
        (
            r#"{"source":"prod/web","destination":"prod/db","protocol":"ICMP","icmpCode":1}"#,
            "icmpCode needs icmpType",
        ),
        (
            r#"{"source":"prod/web","destination":"prod/db","protocol":"ICMP","icmpType":"echo"}"#,
            "icmpType: expected a number",
        ),
    ];
    for (input, want) in cases {
        let out = line(input);
        assert!(out.contains(r#""error":"#), "{input} -> {out}");
        assert!(out.contains(want), "{input} -> {out}");
        assert!(!out.contains(r#""allowed""#), "{input} -> {out}");
    }
}

#[test]
fn run_writes_one_line_per_input_line_and_counts() {
    let input = "{\"source\":\"prod/web\",\"destination\":\"prod/db\",\"port\":5432}\n\n garbage \n{\"source\":\"prod/db\",\"destination\":\"prod/web\",\"port\":80}\n";
    let mut out = Vec::new();
    let stats = run(&engine(POLICIES), &pods(), input.as_bytes(), &mut out).expect("run");
    let text = String::from_utf8(out).expect("utf8");
    assert_eq!(text.lines().count(), 3);
    // db -> web is denied: global-deny-udp selects every pod for ingress and
    // its only rule (UDP) does not match TCP, so the end of the tier denies.
    assert_eq!(
        (stats.lines, stats.allowed, stats.denied, stats.errors),
        (3, 1, 1, 1)
    );
}

#[test]
fn pending_appears_with_staged_policies() {
    let yaml = format!(
        "{POLICIES}---\napiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {{name: lockdown}}\nspec: {{order: 10, selector: all(), ingress: [{{action: Deny}}]}}\n"
    );
    let out = to_json_line(&eval_line(
        &engine(&yaml),
        &pods(),
        r#"{"source":"prod/web","destination":"prod/db","port":5432}"#,
    ));
    assert!(out.contains(r#""allowed":true"#), "{out}");
    assert!(out.contains(r#""pending":{"allowed":false"#), "{out}");
    assert!(
        out.contains(r#""policy":"lockdown","kind":"StagedGlobalNetworkPolicy""#),
        "{out}"
    );
}

#[test]
fn static_pods_parse_named_ports_and_namespace_labels() {
    use crate::endpoint::Protocol;
    use crate::pods::EndpointResolver;
    let p = pods();
    let web = p.resolve("prod/web").expect("web");
    assert_eq!(web.named_port("http", Protocol::Tcp), Some(8080));
    assert_eq!(
        web.namespace_labels.get("env").map(String::as_str),
        Some("prod")
    );
    assert_eq!(web.service_account.as_deref(), Some("default"));
    let bad = StaticPods::load_str(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: y}\nspec: {containers: [{name: c, ports: [{name: p, containerPort: big}]}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: ok, namespace: y}\n",
        "bad-pods.yaml",
    );
    assert_eq!(bad.pods.len(), 1);
    assert_eq!(bad.errors.len(), 1);
    assert!(bad.errors[0]
        .to_string()
        .contains("bad-pods.yaml: Pod y/x: spec.containers[0].ports[0].containerPort"));
}
