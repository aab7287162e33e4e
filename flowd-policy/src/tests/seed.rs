//! The seed scenario: FME Flow engines reaching the core on a port pool that the
//! policies forgot. flowd must name default-deny-fmeserver (end of the default
//! tier) as the denying policy, and recommend the missing port range.

use super::helpers::{engine, side};
use crate::endpoint::{FlowQuery, Protocol};
use crate::eval::Ruling;
use crate::jsonl;
use crate::model::PolicyKind;
use crate::pods::{EndpointResolver, StaticPods};
use crate::recommend::{recommend, ObservedFlow, RecommendOptions, RecommendScope};

pub const POLICIES: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: default-deny-fmeserver
  namespace: fmeserver
spec:
  order: 100
  selector: all()
  types:
  - Ingress
  - Egress
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: engine-fmeserver
  namespace: fmeserver
spec:
  order: 0
  selector: safe.k8s.fmeserver.component contains 'engine'
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: statefulset.kubernetes.io/pod-name contains 'core'
    destination:
      ports: [7500, 7501, '4500:4800']
  egress:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: core-fmeserver
  namespace: fmeserver
spec:
  order: 0
  selector: safe.k8s.fmeserver.component == 'core'
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: safe.k8s.fmeserver.component contains 'engine'
    destination:
      ports: [7070]
"#;

pub const PODS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: fmeserver
    labels: {kubernetes.io/metadata.name: fmeserver}
- apiVersion: v1
  kind: Pod
  metadata:
    name: engine-standard-group-5d9c7b-x2x7q
    namespace: fmeserver
    labels:
      safe.k8s.fmeserver.component: engine
      pod-template-hash: 5d9c7b
  spec:
    serviceAccountName: fmeserver-engine
    containers:
    - name: engine
      image: safesoftware/fmeflow-engine
  status:
    podIP: 10.244.1.10
    podIPs:
    - ip: 10.244.1.10
- apiVersion: v1
  kind: Pod
  metadata:
    name: core-0
    namespace: fmeserver
    labels:
      statefulset.kubernetes.io/pod-name: core-0
      safe.k8s.fmeserver.component: core
      controller-revision-hash: core-6f8d
  spec:
    containers:
    - name: core
      image: safesoftware/fmeflow-core
      ports:
      - {name: registration, containerPort: 7070}
      - {name: web, containerPort: 8080, protocol: TCP}
  status:
    podIPs:
    - ip: 10.244.2.20
"#;

fn pods() -> StaticPods {
    let load = StaticPods::load_str(PODS, "pods.yaml");
    assert!(load.errors.is_empty(), "{:?}", load.errors);
    load.pods
}

fn query(port: u16) -> FlowQuery {
    let p = pods();
    FlowQuery {
        source: p
            .resolve("fmeserver/engine-standard-group-5d9c7b-x2x7q")
            .expect("engine"),
        destination: p.resolve("fmeserver/core-0").expect("core"),
        protocol: Protocol::Tcp,
        port,
        source_port: None,
        icmp: None,
    }
}

#[test]
fn engine_to_core_registration_port_is_allowed() {
    let e = engine(POLICIES);
    let r = e.evaluate(&query(7070));
    assert!(r.allowed, "{}", crate::explain::explain(&query(7070), &r));
    assert_eq!(
        side(&r.egress),
        (true, Some("fmeserver/engine-fmeserver".into()), Some(0))
    );
    assert_eq!(
        side(&r.ingress),
        (true, Some("fmeserver/core-fmeserver".into()), Some(0))
    );
}

#[test]
fn engine_to_core_port_pool_is_denied_by_default_deny_end_of_tier() {
    let e = engine(POLICIES);
    for port in [42001, 42002] {
        let r = e.evaluate(&query(port));
        let text = crate::explain::explain(&query(port), &e.explain(&query(port)));
        assert!(!r.allowed, "{text}");
        assert!(r.egress.allowed, "{text}");
        assert!(!r.ingress.allowed);
        assert_eq!(r.ingress.ruling, Ruling::EndOfTierDeny);
        assert_eq!(r.ingress.rule, Some(-1));
        let p = r.ingress.policy.as_ref().expect("policy");
        assert_eq!(p.name, "default-deny-fmeserver");
        assert_eq!(p.namespace.as_deref(), Some("fmeserver"));
        assert_eq!(p.kind, PolicyKind::CalicoNetworkPolicy);
        assert_eq!(p.tier, "default");
        assert!(text.contains("rule 0: destination port"), "{text}");
        assert!(text.contains("end of tier default"), "{text}");
    }
}

#[test]
fn seed_over_jsonl() {
    let e = engine(POLICIES);
    let input = concat!(
        r#"{"source": "fmeserver/engine-standard-group-5d9c7b-x2x7q", "destination": "fmeserver/core-0", "port": 7070, "protocol": "TCP"}"#,
        "\n",
        r#"{"source": "10.244.1.10", "destination": "10.244.2.20", "port": 42001, "protocol": "TCP"}"#,
        "\n"
    );
    let mut out = Vec::new();
    let stats = jsonl::run(&e, &pods(), input.as_bytes(), &mut out).expect("run");
    assert_eq!(stats.lines, 2);
    let text = String::from_utf8(out).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        r#"{"source":"10.244.1.10","destination":"10.244.2.20","port":42001,"protocol":"TCP","allowed":false,"egress":{"allowed":true,"policy":"fmeserver/engine-fmeserver","kind":"CalicoNetworkPolicy","tier":"default","rule":0},"ingress":{"allowed":false,"policy":"fmeserver/default-deny-fmeserver","kind":"CalicoNetworkPolicy","tier":"default","rule":-1}}"#
    );
    assert!(lines[0].contains(r#""allowed":true"#));
}

#[test]
fn recommend_for_core_proposes_the_port_range() {
    let p = pods();
    let engine_ep = p
        .resolve("fmeserver/engine-standard-group-5d9c7b-x2x7q")
        .expect("engine");
    let core_ep = p.resolve("fmeserver/core-0").expect("core");
    let flows: Vec<ObservedFlow> = [7070, 42001, 42002]
        .into_iter()
        .map(|port| ObservedFlow {
            source: engine_ep.clone(),
            destination: core_ep.clone(),
            protocol: Protocol::Tcp,
            port,
        })
        .collect();
    let recs = recommend(
        &flows,
        &RecommendScope::Workload {
            namespace: "fmeserver".into(),
            labels: [(
                "safe.k8s.fmeserver.component".to_string(),
                "core".to_string(),
            )]
            .into(),
        },
        &RecommendOptions {
            egress: false,
            ..RecommendOptions::default()
        },
    )
    .expect("recommend");
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec.name, "core-recommended");
    assert!(rec.calico_yaml.contains("- 7070\n"), "{}", rec.calico_yaml);
    assert!(
        rec.calico_yaml.contains("- '42001:42002'\n"),
        "{}",
        rec.calico_yaml
    );
    assert!(
        rec.calico_yaml
            .contains("selector: safe.k8s.fmeserver.component == 'engine'"),
        "{}",
        rec.calico_yaml
    );
    assert!(!rec.calico_yaml.contains("pod-template-hash"));
    assert!(!rec
        .calico_yaml
        .contains("statefulset.kubernetes.io/pod-name"));
    assert!(
        rec.kubernetes_yaml.contains("port: 42001\n"),
        "{}",
        rec.kubernetes_yaml
    );
    assert!(
        rec.kubernetes_yaml.contains("endPort: 42002\n"),
        "{}",
        rec.kubernetes_yaml
    );

    // Applied next to the original policies, the recommendation fixes the flows.
    let combined = format!("{POLICIES}---\n{}", rec.calico_yaml);
    let e = engine(&combined);
    for port in [7070, 42001, 42002] {
        assert!(e.evaluate(&query(port)).allowed, "port {port}");
    }
    let r = e.evaluate(&query(42003));
    assert!(!r.allowed);
    assert_eq!(
        r.ingress.policy.as_ref().map(|p| p.name.as_str()),
        Some("core-recommended"),
        "the recommended policy (no order) is now the last selecting policy"
    );

    // The Kubernetes form works the same way.
    let combined = format!("{POLICIES}---\n{}", rec.kubernetes_yaml);
    let e = engine(&combined);
    for port in [42001, 42002] {
        assert!(e.evaluate(&query(port)).allowed, "k8s port {port}");
    }
}
