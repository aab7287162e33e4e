use super::*;
use crate::proto::v1 as pb;

fn pod(namespace: &str, workload: &str, pod: &str, ip: &str, port: u32) -> pb::Endpoint {
    pb::Endpoint {
        ip: ip.into(),
        port,
        kind: pb::EndpointKind::Pod as i32,
        namespace: namespace.into(),
        name: pod.into(),
        workload: Some(pb::Workload {
            kind: "Deployment".into(),
            name: workload.into(),
        }),
        ..Default::default()
    }
}

fn denial(rule_index: i32) -> pb::PolicyDecision {
    pb::PolicyDecision {
        allowed: false,
        policy: Some(pb::PolicyRef {
            kind: "NetworkPolicy".into(),
            tier: "default".into(),
            namespace: "fme".into(),
            name: "default-deny-fmeserver".into(),
            rule_index,
            rule_name: String::new(),
        }),
        action: "EndOfTierDeny".into(),
        trace: vec![],
    }
}

fn flow(source: pb::Endpoint, destination: pb::Endpoint, verdict: pb::Verdict) -> pb::Flow {
    pb::Flow {
        node: "node-a".into(),
        protocol: pb::Protocol::Tcp as i32,
        source: Some(source),
        destination: Some(destination),
        request: Some(pb::TrafficCounters {
            packets: 3,
            bytes: 180,
            ..Default::default()
        }),
        reply: Some(pb::TrafficCounters {
            packets: 2,
            bytes: 120,
            ..Default::default()
        }),
        verdict: verdict as i32,
        outcome: if verdict == pb::Verdict::Denied {
            pb::Outcome::Unanswered as i32
        } else {
            pb::Outcome::Closed as i32
        },
        connections: 1,
        start_time: Some(crate::flow::wire::timestamp_ns(1_000)),
        end_time: Some(crate::flow::wire::timestamp_ns(2_000)),
        ..Default::default()
    }
}

/// The seed story: engine pods reach the core on 7070, and are denied on 42001 and 42002.
fn seed() -> Vec<pb::Flow> {
    let mut flows = Vec::new();
    for (engine, port) in [("engine-1", 7070), ("engine-2", 7070)] {
        let mut f = flow(
            pod("fme", "engine", engine, "198.18.0.1", 40000),
            pod("fme", "core", "core-0", "198.18.0.2", port),
            pb::Verdict::Forwarded,
        );
        f.ingress = Some(pb::PolicyDecision {
            allowed: true,
            policy: Some(pb::PolicyRef {
                rule_index: 0,
                ..denial(0).policy.unwrap()
            }),
            action: "Allow".into(),
            trace: vec![],
        });
        flows.push(f);
    }
    for port in [42001, 42002] {
        let mut f = flow(
            pod("fme", "engine", "engine-1", "198.18.0.1", 40001),
            pod("fme", "core", "core-0", "198.18.0.2", port),
            pb::Verdict::Denied,
        );
        f.drop_reason = "NETFILTER_DROP".into();
        f.ingress = Some(denial(-1));
        f.policy = denial(-1).policy;
        flows.push(f);
    }
    flows
}

fn build(flows: &[pb::Flow], max_edges: usize, loaded: &[LoadedPolicy]) -> pb::GetGraphResponse {
    let mut builder = GraphBuilder::new();
    for f in flows {
        builder.add(f);
    }
    builder.finish(max_edges, loaded)
}

#[test]
fn the_seed_story_is_one_denied_edge_between_two_workloads() {
    let graph = build(&seed(), DEFAULT_MAX_EDGES, &[]);
    assert_eq!(graph.flows, 4);
    let ids: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "workload:fme/Deployment/core",
            "workload:fme/Deployment/engine"
        ]
    );
    let engine = &graph.nodes[1];
    assert_eq!((engine.pod_count, engine.pods.len()), (2, 2));
    assert_eq!(graph.edges.len(), 1);
    let edge = &graph.edges[0];
    assert_eq!(edge.source, "workload:fme/Deployment/engine");
    assert_eq!(
        edge.verdict,
        pb::Verdict::Denied as i32,
        "any denial colours it"
    );
    assert_eq!(
        edge.ports,
        [
            pb::PortRange {
                first: 7070,
                last: 7070
            },
            pb::PortRange {
                first: 42001,
                last: 42002
            }
        ]
    );
    assert_eq!((edge.connections, edge.flows), (4, 4));
    assert_eq!((edge.bytes, edge.packets), (4 * 300, 4 * 5));
    let denied: Vec<_> = edge.policies.iter().filter(|p| !p.allowed).collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].connections, 2);
    assert_eq!(denied[0].side, pb::PolicySide::Ingress as i32);
    assert_eq!(denied[0].policy.as_ref().unwrap().rule_index, -1);
    assert_eq!(
        edge.drop_reasons,
        [pb::DropReasonCount {
            reason: "NETFILTER_DROP".into(),
            connections: 2
        }]
    );
    let verdict = |v: pb::Verdict| {
        edge.verdicts
            .iter()
            .find(|c| c.verdict == v as i32)
            .map_or(0, |c| c.connections)
    };
    assert_eq!(
        (
            verdict(pb::Verdict::Forwarded),
            verdict(pb::Verdict::Denied)
        ),
        (2, 2)
    );
}

#[test]
fn the_board_lists_loaded_policies_and_counts_each_side() {
    let loaded = [
        LoadedPolicy {
            reference: pb::PolicyRef {
                rule_index: 0,
                ..denial(0).policy.unwrap()
            },
            text: "kind: NetworkPolicy\n".into(),
            origin: "seed.yaml".into(),
        },
        LoadedPolicy {
            reference: pb::PolicyRef {
                kind: "GlobalNetworkPolicy".into(),
                tier: "security".into(),
                name: "unused".into(),
                ..Default::default()
            },
            text: "kind: GlobalNetworkPolicy\n".into(),
            origin: "seed.yaml".into(),
        },
    ];
    let graph = build(&seed(), DEFAULT_MAX_EDGES, &loaded);
    assert_eq!(graph.policies.len(), 2, "{:?}", graph.policies);
    let seed = graph
        .policies
        .iter()
        .find(|p| p.policy.as_ref().unwrap().name == "default-deny-fmeserver")
        .unwrap();
    assert_eq!((seed.allowed_connections, seed.denied_connections), (2, 2));
    assert_eq!(seed.text, "kind: NetworkPolicy\n");
    let unused = graph
        .policies
        .iter()
        .find(|p| p.policy.as_ref().unwrap().name == "unused")
        .unwrap();
    assert_eq!(
        (unused.allowed_connections, unused.denied_connections),
        (0, 0)
    );
}

#[test]
fn a_large_graph_keeps_denied_edges_first_then_the_busiest() {
    let mut flows = Vec::new();
    for i in 0..50u32 {
        let mut f = flow(
            pod(
                "a",
                &format!("client-{i}"),
                &format!("client-{i}-x"),
                "198.18.1.1",
                1,
            ),
            pod("b", "server", "server-0", "198.18.2.1", 80),
            pb::Verdict::Forwarded,
        );
        f.connections = u64::from(i) + 10;
        flows.push(f);
    }
    flows.push(flow(
        pod("a", "quiet", "quiet-0", "198.18.1.9", 1),
        pod("b", "server", "server-0", "198.18.2.1", 81),
        pb::Verdict::Denied,
    ));
    let graph = build(&flows, 5, &[]);
    assert_eq!((graph.edges.len(), graph.edges_total), (5, 51));
    let sources: Vec<&str> = graph.edges.iter().map(|e| e.source.as_str()).collect();
    assert!(
        sources.contains(&"workload:a/Deployment/quiet"),
        "{sources:?}"
    );
    for busiest in 46..50 {
        assert!(
            sources.contains(&format!("workload:a/Deployment/client-{busiest}").as_str()),
            "{sources:?}"
        );
    }
    assert_eq!(graph.nodes.len(), 6, "only nodes of kept edges");
}

#[test]
fn hosts_services_and_outside_addresses_are_their_own_nodes() {
    let host = pb::Endpoint {
        ip: "10.0.0.1".into(),
        kind: pb::EndpointKind::Host as i32,
        ..Default::default()
    };
    let world = pb::Endpoint {
        ip: "203.0.113.9".into(),
        port: 443,
        kind: pb::EndpointKind::WorldPublic as i32,
        ..Default::default()
    };
    let mut ping = flow(host, world, pb::Verdict::Forwarded);
    ping.protocol = pb::Protocol::Icmp as i32;
    let graph = build(&[ping], DEFAULT_MAX_EDGES, &[]);
    let ids: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["host:node-a", "world:203.0.113.9"]);
    assert!(graph.nodes[1].public);
    assert!(graph.edges[0].ports.is_empty(), "ICMP has no ports");
}

#[test]
fn a_port_scan_folds_into_ranges() {
    let flows: Vec<pb::Flow> = (1..=3000u32)
        .filter(|p| *p != 1500)
        .map(|port| {
            flow(
                pod("a", "scanner", "scanner-0", "198.18.1.1", 1),
                pod("b", "target", "target-0", "198.18.2.1", port),
                pb::Verdict::Forwarded,
            )
        })
        .collect();
    let graph = build(&flows, DEFAULT_MAX_EDGES, &[]);
    assert_eq!(
        graph.edges[0].ports,
        [
            pb::PortRange {
                first: 1,
                last: 1499
            },
            pb::PortRange {
                first: 1501,
                last: 3000
            }
        ]
    );
}

#[test]
fn merged_graphs_add_up_as_one_built_from_all_records() {
    let all = seed();
    let (a, b) = all.split_at(1);
    let merged = merge(
        vec![
            build(a, DEFAULT_MAX_EDGES, &[]),
            build(b, DEFAULT_MAX_EDGES, &[]),
        ],
        DEFAULT_MAX_EDGES,
    );
    let whole = build(&all, DEFAULT_MAX_EDGES, &[]);
    assert_eq!(merged.nodes, whole.nodes);
    assert_eq!(merged.flows, whole.flows);
    let (mut m, mut w) = (merged.edges[0].clone(), whole.edges[0].clone());
    for edge in [&mut m, &mut w] {
        edge.outcomes.sort_by_key(|c| c.outcome);
        edge.verdicts.sort_by_key(|c| c.verdict);
        edge.policies.sort_by_key(|p| (p.side, p.allowed));
    }
    assert_eq!(m, w);
    assert_eq!(merged.policies, whole.policies);
}
