//! The evaluation cache: hits, sharing across identically labelled pods,
//! and no stale answers when anything relevant differs.

use super::helpers::*;
use crate::eval::{EngineOptions, PolicyEngine};
use crate::load::load_str;

const POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
    - ipBlock: {cidr: 10.0.9.0/24}
"#;

#[test]
fn repeated_flow_hits_the_cache() {
    let e = engine(POLICY);
    let q = tcp(&prod_web(), &prod_db(), 5432);
    let a = e.evaluate(&q);
    let b = e.evaluate(&q);
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    let s = e.cache_stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
}

#[test]
fn pods_with_same_labels_share_entries_but_cidrs_split_them() {
    let e = engine(POLICY);
    let web2 = pod(
        "prod",
        "web-2",
        "10.0.1.77",
        &[("app", "web"), ("tier", "frontend")],
    )
    .with_service_account("web-sa");
    e.evaluate(&tcp(&prod_web(), &prod_db(), 5432));
    e.evaluate(&tcp(&web2, &prod_db(), 5432));
    assert_eq!(e.cache_stats().hits, 1, "same labels, same CIDR class");
    // An address inside the ipBlock is a different class.
    let inside = pod("prod", "x", "10.0.9.5", &[("app", "other")]);
    let outside = pod("prod", "y", "10.0.8.5", &[("app", "other")]);
    assert!(e.evaluate(&tcp(&inside, &prod_db(), 5432)).allowed);
    assert!(!e.evaluate(&tcp(&outside, &prod_db(), 5432)).allowed);
}

#[test]
fn label_or_port_change_is_a_miss() {
    let e = engine(POLICY);
    assert!(e.evaluate(&tcp(&prod_web(), &prod_db(), 5432)).allowed);
    let not_web = prod_web().with_label("app", "api");
    assert!(!e.evaluate(&tcp(&not_web, &prod_db(), 5432)).allowed);
    let mut other_ns_labels = prod_web();
    other_ns_labels
        .namespace_labels
        .insert("x".into(), "y".into());
    e.evaluate(&tcp(&other_ns_labels, &prod_db(), 5432));
    e.evaluate(&tcp(&prod_web(), &prod_db(), 5433));
    assert_eq!(e.cache_stats().hits, 0);
    assert_eq!(e.cache_stats().entries, 4);
}

#[test]
fn zero_capacity_disables_and_small_capacity_stays_bounded() {
    let set = load_str(POLICY, "p.yaml").policies;
    let e = PolicyEngine::with_options(&set, EngineOptions { cache_capacity: 0 });
    e.evaluate(&tcp(&prod_web(), &prod_db(), 5432));
    assert_eq!(e.cache_stats().entries, 0);
    let e = PolicyEngine::with_options(&set, EngineOptions { cache_capacity: 3 });
    for port in 1..=10 {
        e.evaluate(&tcp(&prod_web(), &prod_db(), port));
    }
    assert!(e.cache_stats().entries <= 3);
    e.clear_cache();
    assert_eq!(e.cache_stats().entries, 0);
}

#[test]
fn engine_is_shareable_across_threads() {
    let e = std::sync::Arc::new(engine(POLICY));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let e = std::sync::Arc::clone(&e);
            std::thread::spawn(move || e.evaluate(&tcp(&prod_web(), &prod_db(), 5432 + i)).allowed)
        })
        .collect();
    for h in handles {
        assert!(h.join().expect("thread"));
    }
}
