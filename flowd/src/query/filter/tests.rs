//! Table of filter semantics: each case is (allow, deny, expected) against one flow.

use std::collections::HashMap;

use super::*;

fn flow() -> pb::Flow {
    let labels: HashMap<String, String> = [("app", "engine"), ("tier", "backend")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pb::Flow {
        node: "node-1".into(),
        protocol: pb::Protocol::Tcp as i32,
        ip_version: pb::IpVersion::Ipv4 as i32,
        source: Some(pb::Endpoint {
            ip: "198.18.0.1".into(),
            port: 40000,
            kind: pb::EndpointKind::Pod as i32,
            namespace: "fmeserver".into(),
            name: "engine-7d9f".into(),
            labels,
            workload: Some(pb::Workload {
                kind: "Deployment".into(),
                name: "engine".into(),
            }),
            ..Default::default()
        }),
        destination: Some(pb::Endpoint {
            ip: "198.18.0.2".into(),
            port: 42001,
            kind: pb::EndpointKind::Pod as i32,
            namespace: "fmeserver".into(),
            name: "core-0".into(),
            services: vec!["fmeserver/core".into()],
            ..Default::default()
        }),
        request: Some(pb::TrafficCounters {
            direction: pb::TrafficDirection::Egress as i32,
            ..Default::default()
        }),
        verdict: pb::Verdict::Denied as i32,
        drop_reason: "NETFILTER_DROP".into(),
        outcome: pb::Outcome::Unanswered as i32,
        policy: Some(pb::PolicyRef {
            kind: "NetworkPolicy".into(),
            tier: "default".into(),
            namespace: "fmeserver".into(),
            name: "default-deny".into(),
            rule_index: -1,
            rule_name: String::new(),
        }),
        interface: Some(pb::Interface {
            name: "veth0".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn f(build: impl FnOnce(&mut pb::FlowFilter)) -> pb::FlowFilter {
    let mut filter = pb::FlowFilter::default();
    build(&mut filter);
    filter
}

#[test]
fn filter_semantics_table() {
    let s = |v: &str| vec![v.to_string()];
    let cases: Vec<(&str, Vec<pb::FlowFilter>, Vec<pb::FlowFilter>, bool)> = vec![
        ("no filters", vec![], vec![], true),
        (
            "source ip exact",
            vec![f(|x| x.source_ip = s("198.18.0.1"))],
            vec![],
            true,
        ),
        (
            "source ip cidr",
            vec![f(|x| x.source_ip = s("198.18.0.0/15"))],
            vec![],
            true,
        ),
        (
            "source ip wrong side",
            vec![f(|x| x.source_ip = s("198.18.0.2"))],
            vec![],
            false,
        ),
        (
            "either ip",
            vec![f(|x| x.ip = s("198.18.0.2/32"))],
            vec![],
            true,
        ),
        (
            "destination port",
            vec![f(|x| x.destination_port = vec![42001])],
            vec![],
            true,
        ),
        (
            "destination port is not source",
            vec![f(|x| x.source_port = vec![42001])],
            vec![],
            false,
        ),
        (
            "either port",
            vec![f(|x| x.port = vec![40000])],
            vec![],
            true,
        ),
        (
            "port list is OR",
            vec![f(|x| x.destination_port = vec![7070, 42001])],
            vec![],
            true,
        ),
        (
            "protocol",
            vec![f(|x| x.protocol = vec![pb::Protocol::Udp as i32])],
            vec![],
            false,
        ),
        (
            "AND inside a filter",
            vec![f(|x| {
                x.protocol = vec![pb::Protocol::Tcp as i32];
                x.destination_port = vec![7070];
            })],
            vec![],
            false,
        ),
        (
            "OR between filters",
            vec![
                f(|x| x.destination_port = vec![7070]),
                f(|x| x.verdict = vec![pb::Verdict::Denied as i32]),
            ],
            vec![],
            true,
        ),
        (
            "deny wins",
            vec![f(|x| x.namespace = s("fmeserver"))],
            vec![f(|x| x.pod = s("fmeserver/core"))],
            false,
        ),
        (
            "deny alone",
            vec![],
            vec![f(|x| x.node = s("node-2"))],
            true,
        ),
        (
            "verdict",
            vec![f(|x| x.verdict = vec![pb::Verdict::Forwarded as i32])],
            vec![],
            false,
        ),
        (
            "drop reason",
            vec![f(|x| x.drop_reason = s("NETFILTER_DROP"))],
            vec![],
            true,
        ),
        (
            "direction of the request",
            vec![f(|x| {
                x.direction = vec![pb::TrafficDirection::Ingress as i32]
            })],
            vec![],
            false,
        ),
        (
            "outcome",
            vec![f(|x| x.outcome = vec![pb::Outcome::Unanswered as i32])],
            vec![],
            true,
        ),
        (
            "namespace either side",
            vec![f(|x| x.namespace = s("fmeserver"))],
            vec![],
            true,
        ),
        ("pod prefix", vec![f(|x| x.pod = s("engine"))], vec![], true),
        (
            "pod ns/prefix",
            vec![f(|x| x.pod = s("fmeserver/core-"))],
            vec![],
            true,
        ),
        (
            "pod wrong namespace",
            vec![f(|x| x.pod = s("default/core"))],
            vec![],
            false,
        ),
        (
            "label selector",
            vec![f(|x| x.label = s("app=engine,tier in (backend)"))],
            vec![],
            true,
        ),
        (
            "label selector miss",
            vec![f(|x| x.label = s("app=core"))],
            vec![],
            false,
        ),
        (
            "workload name",
            vec![f(|x| x.workload = s("engine"))],
            vec![],
            true,
        ),
        (
            "workload kind/name",
            vec![f(|x| x.workload = s("deployment/engine"))],
            vec![],
            true,
        ),
        (
            "workload wrong kind",
            vec![f(|x| x.workload = s("StatefulSet/engine"))],
            vec![],
            false,
        ),
        (
            "service ns/name",
            vec![f(|x| x.service = s("fmeserver/core"))],
            vec![],
            true,
        ),
        (
            "service name",
            vec![f(|x| x.service = s("core"))],
            vec![],
            true,
        ),
        (
            "policy name",
            vec![f(|x| x.policy = s("default-deny"))],
            vec![],
            true,
        ),
        (
            "policy ns/name",
            vec![f(|x| x.policy = s("fmeserver/default-deny"))],
            vec![],
            true,
        ),
        (
            "policy tier/name",
            vec![f(|x| x.policy = s("default/default-deny"))],
            vec![],
            true,
        ),
        (
            "policy other",
            vec![f(|x| x.policy = s("allow-core"))],
            vec![],
            false,
        ),
        ("node", vec![f(|x| x.node = s("node-1"))], vec![], true),
        (
            "interface",
            vec![f(|x| x.interface = s("eth0"))],
            vec![],
            false,
        ),
        (
            "ip version",
            vec![f(|x| x.ip_version = vec![pb::IpVersion::Ipv6 as i32])],
            vec![],
            false,
        ),
    ];
    let flow = flow();
    for (name, allow, deny, expected) in cases {
        let matcher = FlowMatcher::new(&allow, &deny).unwrap();
        assert_eq!(matcher.matches(&flow), expected, "{name}");
    }
}

#[test]
fn bad_filters_name_the_field_and_value() {
    let cases = [
        (f(|x| x.source_ip = vec!["10.0.0.0/33".into()]), "source_ip"),
        (f(|x| x.ip = vec!["not-an-ip".into()]), "not-an-ip"),
        (f(|x| x.port = vec![70000]), "70000"),
        (f(|x| x.verdict = vec![42]), "verdict"),
        (f(|x| x.label = vec!["env in dev".into()]), "env in dev"),
        (f(|x| x.namespace = vec![String::new()]), "namespace"),
    ];
    for (filter, needle) in cases {
        let err = FlowMatcher::new(&[filter], &[]).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn not_forwarded_index_is_used_only_when_safe() {
    let dropped = f(|x| x.verdict = vec![pb::Verdict::Dropped as i32, pb::Verdict::Denied as i32]);
    let any = f(|x| x.port = vec![80]);
    let forwarded = f(|x| x.verdict = vec![pb::Verdict::Forwarded as i32]);
    assert!(FlowMatcher::new(std::slice::from_ref(&dropped), &[])
        .unwrap()
        .only_not_forwarded());
    assert!(!FlowMatcher::new(&[dropped.clone(), any], &[])
        .unwrap()
        .only_not_forwarded());
    assert!(!FlowMatcher::new(&[forwarded], &[])
        .unwrap()
        .only_not_forwarded());
    assert!(!FlowMatcher::new(&[], &[dropped])
        .unwrap()
        .only_not_forwarded());
}
