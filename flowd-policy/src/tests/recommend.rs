//! Recommendations: stable selectors, merged ranges, deterministic output,
//! and policies that admit exactly the observed flows.

use std::collections::BTreeSet;

use super::helpers::*;
use crate::endpoint::Protocol;
use crate::load::load_str;
use crate::recommend::{
    port_ranges, recommend, stable_labels, to_yaml_stream, ObservedFlow, RecommendOptions,
    RecommendScope,
};

fn obs(src: &crate::Endpoint, dst: &crate::Endpoint, proto: Protocol, port: u16) -> ObservedFlow {
    ObservedFlow {
        source: src.clone(),
        destination: dst.clone(),
        protocol: proto,
        port,
    }
}

#[test]
fn ranges_merge_consecutive_ports() {
    let set: BTreeSet<u16> = [1, 2, 3, 5, 7, 8, 65535, 65534].into_iter().collect();
    assert_eq!(
        port_ranges(&set),
        vec![(1, 3), (5, 5), (7, 8), (65534, 65535)]
    );
}

#[test]
fn unstable_labels_are_dropped() {
    let web = prod_web()
        .with_label("pod-template-hash", "abc")
        .with_label("controller-revision-hash", "x")
        .with_label("statefulset.kubernetes.io/pod-name", "web-0")
        .with_label("pod-template-generation", "3");
    let stable = stable_labels(&web.labels);
    assert_eq!(stable.keys().collect::<Vec<_>>(), ["app", "tier"]);
}

fn sample_flows() -> Vec<ObservedFlow> {
    let db2 = pod(
        "prod",
        "db-1",
        "10.0.1.9",
        &[("app", "db"), ("pod-template-hash", "zz")],
    );
    vec![
        obs(&prod_web(), &prod_db(), Protocol::Tcp, 5432),
        obs(&prod_web(), &db2, Protocol::Tcp, 5433),
        obs(&prod_api(), &prod_db(), Protocol::Tcp, 5432),
        obs(&prod_api(), &prod_db(), Protocol::Tcp, 5433),
        obs(&dev_tool(), &prod_db(), Protocol::Tcp, 9187),
        obs(&prod_db(), &dns(), Protocol::Udp, 53),
        obs(&prod_web(), &prod_db(), Protocol::Icmp, 0),
        obs(&world(), &prod_web(), Protocol::Tcp, 443),
    ]
}

#[test]
fn namespace_recommendation_is_deterministic_and_complete() {
    let recs = recommend(
        &sample_flows(),
        &RecommendScope::Namespace("prod".into()),
        &RecommendOptions::default(),
    )
    .expect("recommend");
    let names: Vec<_> = recs.iter().map(|r| r.name.as_str()).collect();
    // Workloads sorted by their label sets: {app:api,role:backend} < {app:db} < {app:web,tier:frontend}.
    assert_eq!(
        names,
        ["api-recommended", "db-recommended", "web-recommended"]
    );
    let again = recommend(
        &sample_flows().into_iter().rev().collect::<Vec<_>>(),
        &RecommendScope::Namespace("prod".into()),
        &RecommendOptions::default(),
    )
    .expect("recommend");
    assert_eq!(recs, again, "input order must not matter");

    let db = &recs[1];
    // web and api both used 5432-5433: one Kubernetes rule with two peers.
    assert!(
        db.kubernetes_yaml
            .contains("port: 5432\n      endPort: 5433"),
        "{}",
        db.kubernetes_yaml
    );
    assert!(
        db.kubernetes_yaml
            .contains("kubernetes.io/metadata.name: dev"),
        "{}",
        db.kubernetes_yaml
    );
    assert!(
        db.calico_yaml
            .contains("namespaceSelector: projectcalico.org/name == 'dev'"),
        "{}",
        db.calico_yaml
    );
    assert!(
        db.calico_yaml.contains("- '5432:5433'\n"),
        "{}",
        db.calico_yaml
    );
    assert!(
        db.calico_yaml.contains("protocol: ICMP"),
        "{}",
        db.calico_yaml
    );
    assert!(
        db.notes.iter().any(|n| n.contains("ICMP")),
        "{:?}",
        db.notes
    );
    assert!(
        db.kubernetes_yaml.contains("cidr: 8.8.8.8/32"),
        "{}",
        db.kubernetes_yaml
    );
    assert!(!db.kubernetes_yaml.contains("pod-template-hash"));
    let stream = to_yaml_stream(&recs, true);
    assert_eq!(stream.matches("---\n").count(), 2);
}

#[test]
fn recommended_policies_load_and_allow_exactly_the_observed_flows() {
    let flows = sample_flows();
    let recs = recommend(
        &flows,
        &RecommendScope::Namespace("prod".into()),
        &RecommendOptions::default(),
    )
    .expect("recommend");
    for calico in [false, true] {
        let yaml = to_yaml_stream(&recs, calico);
        let loaded = load_str(&yaml, "recommended.yaml");
        assert!(loaded.errors.is_empty(), "{:?}\n{yaml}", loaded.errors);
        let e = crate::PolicyEngine::new(&loaded.policies);
        for f in &flows {
            if !calico && f.protocol == Protocol::Icmp {
                continue;
            }
            let q = flow(&f.source, &f.destination, f.protocol, f.port);
            let r = e.evaluate(&q);
            assert!(
                r.allowed,
                "calico={calico} {}\n{yaml}",
                crate::explain::explain(&q, &r)
            );
        }
        // Unobserved traffic stays denied.
        for q in [
            tcp(&prod_web(), &prod_db(), 5434),
            tcp(&dev_web(), &prod_db(), 5432),
            tcp(&prod_db(), &dns(), 53),
            tcp(&prod_web(), &prod_api(), 80),
        ] {
            assert!(!e.evaluate(&q).allowed, "calico={calico} {q:?}\n{yaml}");
        }
    }
}

#[test]
fn workload_scope_and_options() {
    let recs = recommend(
        &sample_flows(),
        &RecommendScope::Workload {
            namespace: "prod".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
        },
        &RecommendOptions {
            ingress: false,
            calico_order: Some(50.0),
            calico_tier: Some("application".into()),
            ..RecommendOptions::default()
        },
    )
    .expect("recommend");
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert!(
        r.kubernetes_yaml.contains("policyTypes:\n  - Egress\n"),
        "{}",
        r.kubernetes_yaml
    );
    assert!(!r.kubernetes_yaml.contains("ingress"));
    assert!(r.calico_yaml.contains("tier: application"));
    assert!(r.calico_yaml.contains("order: 50"));
    assert!(r.calico_yaml.contains("selector: app == 'web'"));
}

#[test]
fn no_flows_no_recommendations() {
    let recs = recommend(
        &[],
        &RecommendScope::Namespace("prod".into()),
        &RecommendOptions::default(),
    )
    .expect("recommend");
    assert!(recs.is_empty());
}

#[test]
fn calico_port_ranges_are_quoted_so_yaml_1_1_readers_keep_them_strings() {
    // 10:20 is a base-60 integer (620) to a YAML 1.1 reader unless it is quoted.
    let flows: Vec<_> = (10..=20)
        .map(|port| obs(&prod_web(), &prod_db(), Protocol::Tcp, port))
        .collect();
    let recs = recommend(
        &flows,
        &RecommendScope::Namespace("prod".into()),
        &RecommendOptions::default(),
    )
    .expect("recommend");
    let calico = to_yaml_stream(&recs, true);
    assert!(calico.contains("'10:20'"), "{calico}");
    let loaded = load_str(&calico, "recommended.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let kubernetes = to_yaml_stream(&recs, false);
    assert!(kubernetes.contains("endPort: 20"), "{kubernetes}");
}
