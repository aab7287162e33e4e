//! Fixtures: a small cluster and shorthands for building and checking flows.

use std::net::IpAddr;

use crate::endpoint::{Endpoint, FlowQuery, Icmp, Protocol};
use crate::eval::{Evaluation, PolicyEngine, SideDecision};
use crate::load::load_str;

/// Build an engine from YAML; any load error fails the test.
pub fn engine(yaml: &str) -> PolicyEngine {
    let r = load_str(yaml, "test.yaml");
    assert!(r.errors.is_empty(), "load errors: {:#?}", r.errors);
    PolicyEngine::new(&r.policies)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

fn ns_labels(ns: &str) -> Vec<(&'static str, &'static str)> {
    match ns {
        "prod" => vec![("env", "prod")],
        "dev" => vec![("env", "dev")],
        "mon" => vec![("team", "ops")],
        _ => vec![],
    }
}

pub fn pod(ns: &str, name: &str, addr: &str, labels: &[(&str, &str)]) -> Endpoint {
    let mut ep = Endpoint::pod(ns, name, ip(addr)).with_service_account("default");
    for (k, v) in labels {
        ep = ep.with_label(k, v);
    }
    for (k, v) in ns_labels(ns) {
        ep = ep.with_namespace_label(k, v);
    }
    ep
}

// The standard cluster: namespaces prod (env=prod), dev (env=dev), mon (team=ops).
pub fn prod_web() -> Endpoint {
    pod(
        "prod",
        "web-1",
        "10.0.1.1",
        &[("app", "web"), ("tier", "frontend")],
    )
    .with_service_account("web-sa")
}
pub fn prod_db() -> Endpoint {
    pod("prod", "db-0", "10.0.1.2", &[("app", "db")])
        .with_named_port("pg", 5432, Protocol::Tcp)
        .with_named_port("metrics", 9187, Protocol::Tcp)
        .with_service_account("db-sa")
}
pub fn prod_api() -> Endpoint {
    pod(
        "prod",
        "api-1",
        "10.0.1.3",
        &[("app", "api"), ("role", "backend")],
    )
}
pub fn dev_web() -> Endpoint {
    pod("dev", "web-1", "10.0.2.1", &[("app", "web")])
}
pub fn dev_tool() -> Endpoint {
    pod("dev", "tool-1", "10.0.2.2", &[("app", "tool")])
}
pub fn mon_prom() -> Endpoint {
    pod("mon", "prom-0", "10.0.3.1", &[("app", "prometheus")])
}
pub fn world() -> Endpoint {
    Endpoint::external(ip("203.0.113.5"))
}
pub fn dns() -> Endpoint {
    Endpoint::external(ip("8.8.8.8"))
}

pub fn flow(src: &Endpoint, dst: &Endpoint, protocol: Protocol, port: u16) -> FlowQuery {
    FlowQuery {
        source: src.clone(),
        destination: dst.clone(),
        protocol,
        port,
        source_port: None,
        icmp: None,
    }
}

pub fn tcp(src: &Endpoint, dst: &Endpoint, port: u16) -> FlowQuery {
    flow(src, dst, Protocol::Tcp, port)
}

pub fn udp(src: &Endpoint, dst: &Endpoint, port: u16) -> FlowQuery {
    flow(src, dst, Protocol::Udp, port)
}

/// An ICMP (or ICMPv6) flow whose request is this message.
pub fn icmp(src: &Endpoint, dst: &Endpoint, protocol: Protocol, kind: u8, code: u8) -> FlowQuery {
    FlowQuery {
        icmp: Some(Icmp { kind, code }),
        ..flow(src, dst, protocol, 0)
    }
}

pub fn from_port(mut q: FlowQuery, source_port: u16) -> FlowQuery {
    q.source_port = Some(source_port);
    q
}

/// (allowed, "ns/name" of the deciding policy, rule) for compact asserts.
pub type Side = (bool, Option<String>, Option<i32>);

pub fn side(s: &SideDecision) -> Side {
    (
        s.allowed,
        s.policy.as_ref().map(|p| p.qualified_name()),
        s.rule,
    )
}

/// Decided by `policy` (qualified name) at `rule`.
pub fn by(allowed: bool, policy: &str, rule: i32) -> Side {
    (allowed, Some(policy.to_string()), Some(rule))
}

/// Not decided by any policy (not isolated / not a pod / profile).
pub fn open() -> Side {
    (true, None, None)
}

pub fn eval(yaml: &str, q: &FlowQuery) -> Evaluation {
    engine(yaml).evaluate_uncached(q)
}

/// Evaluate and check both sides and the overall verdict.
pub fn check(yaml: &str, q: &FlowQuery, egress: Side, ingress: Side) {
    let e = engine(yaml);
    let r = e.evaluate_uncached(q);
    let full = e.explain(q);
    let text = crate::explain::explain(q, &full);
    // explain() decides exactly as evaluate() does; it only adds notes.
    assert_eq!(side(&full.egress), side(&r.egress), "{text}");
    assert_eq!(side(&full.ingress), side(&r.ingress), "{text}");
    assert_eq!(side(&r.egress), egress, "egress mismatch\n{text}");
    assert_eq!(side(&r.ingress), ingress, "ingress mismatch\n{text}");
    assert_eq!(r.allowed, egress.0 && ingress.0, "overall mismatch\n{text}");
    // The cached path must agree with the uncached one.
    assert_eq!(*e.evaluate(q), r);
    assert_eq!(*e.evaluate(q), r);
}

/// Evaluate with the full explain trace.
pub fn explained(yaml: &str, q: &FlowQuery) -> Evaluation {
    engine(yaml).explain(q)
}
