//! The relay over real agent API servers on real histories, in process (no kernel needed):
//! finding them from the EndpointSlices of their headless Service on a fake API server speaking
//! the list/watch protocol (a slice that goes away ends its node with GONE), TLS with client
//! certificates on both sides, and a named gap when retention passed a resumed position.

mod support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{body::Body, extract::State, http::Uri, response::Response, routing::get, Router};
use flowd::{
    api::{self, client, proto::v1 as pb, FlowApi, Listeners, TlsFiles},
    flow::FlowRecord,
    relay::{discovery, PeerSet, PeerTarget, PeerTiming, Position, RelayOptions, RelayService},
    store::{FlowStore, Hub, Retention},
    telemetry::Telemetry,
};
use futures::StreamExt as _;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct Agent {
    hub: Hub,
    telemetry: Arc<Telemetry>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn agent(node: &str) -> Agent {
    agent_with(node, None, u64::MAX).await
}

/// An agent API on loopback TCP (with `tls`), its history kept to `max_bytes`.
async fn agent_with(node: &str, tls: Option<TlsFiles>, max_bytes: u64) -> Agent {
    agent_serving(node, tls, max_bytes, None).await
}

/// As `agent_with`, evaluating `policies` (for the policy board and recommendations).
async fn agent_serving(
    node: &str,
    tls: Option<TlsFiles>,
    max_bytes: u64,
    policies: Option<Arc<flowd::attribution::Attributor>>,
) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let store = FlowStore::open(
        &dir.path().join("flows.redb"),
        Retention {
            max_age: Duration::from_secs(3600),
            max_bytes,
        },
        4 << 20,
    )
    .unwrap();
    let hub = Hub::new(Arc::new(store), 1024);
    let telemetry = Arc::new(Telemetry::new(node, 1024));
    let listeners = Listeners::bind_tcp("127.0.0.1:0".parse().unwrap(), tls.as_ref())
        .await
        .unwrap();
    let addr = listeners.tcp_addr().unwrap();
    // What the store stage does on a node: tell followers that time moved on.
    let pulse = hub.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            pulse.pulse_watermark();
        }
    });
    let mut flow_api = FlowApi::new(hub.clone(), telemetry.clone());
    if let Some(policies) = policies {
        flow_api = flow_api.with_policies(policies);
    }
    tokio::spawn(api::serve(flow_api, listeners, CancellationToken::new()));
    Agent {
        hub,
        telemetry,
        addr,
        _dir: dir,
    }
}

impl Agent {
    async fn publish(&self, ports: std::ops::RangeInclusive<u16>) {
        let records = ports.map(FlowRecord::sample).collect();
        self.hub.publish(records, &self.telemetry).await;
    }
}

fn slice(name: &str, port: u16) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "flowd", "resourceVersion": "1",
                     "labels": {"kubernetes.io/service-name": "flowd-agents"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
        "ports": [{"name": "grpc", "port": port, "protocol": "TCP"}]
    })
}

struct Fake {
    slices: Vec<Value>,
    /// Fired by the test: the watch then reports the second slice deleted.
    remove_second: Notify,
}

async fn endpoint_slices(State(fake): State<Arc<Fake>>, uri: Uri) -> Response {
    let query = uri.query().unwrap_or_default().to_owned();
    assert!(
        query.contains("labelSelector=kubernetes.io%2Fservice-name%3Dflowd-agents"),
        "the relay selects the agents' Service's slices: {query}"
    );
    if query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1")
    {
        let fake = fake.clone();
        let deleted = async move {
            fake.remove_second.notified().await;
            let event = json!({"type": "DELETED", "object": fake.slices[1]});
            Ok::<_, std::io::Error>(format!("{event}\n"))
        };
        let body = futures::stream::once(deleted).chain(futures::stream::pending());
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(body))
            .unwrap();
    }
    let list = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
                      "metadata": {"resourceVersion": "1"}, "items": fake.slices});
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(list.to_string()))
        .unwrap()
}

fn source_port(flow: &pb::Flow) -> u32 {
    flow.source.as_ref().map(|s| s.port).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_follows_the_agents_endpoint_slices() {
    let one = agent("node-one").await;
    let two = agent("node-two").await;
    let fake = Arc::new(Fake {
        slices: vec![
            slice("flowd-agents-one", one.addr.port()),
            slice("flowd-agents-two", two.addr.port()),
        ],
        remove_second: Notify::new(),
    });
    let app = Router::new()
        .route(
            "/apis/discovery.k8s.io/v1/namespaces/flowd/endpointslices",
            get(endpoint_slices),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let kube = kube::Client::try_from(kube::Config::new(
        format!("http://{api_addr}").parse().unwrap(),
    ))
    .unwrap();

    let stop = CancellationToken::new();
    let peers = discovery::follow_service(
        kube,
        discovery::ServiceDiscovery {
            namespace: "flowd".into(),
            service: "flowd-agents".into(),
            port_name: "grpc".into(),
            tls: None,
        },
        stop.clone(),
    );
    let relay_addr = relay(peers, None).await;

    let mut client = client::connect_tcp(relay_addr, None).await.unwrap();
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut states: Vec<(String, pb::NodeState)> = Vec::new();
    let mut ports = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut published = false;
    let mut removed = false;
    let mut published_after_gone = false;
    loop {
        let connected = ["node-one", "node-two"].iter().all(|n| {
            states
                .iter()
                .any(|(node, s)| node == n && *s == pb::NodeState::Connected)
        });
        if connected && !published {
            published = true;
            one.publish(1000..=1002).await;
            two.publish(2000..=2002).await;
        }
        if ports.len() >= 6 && !removed {
            removed = true;
            fake.remove_second.notify_one();
        }
        let gone = states
            .iter()
            .any(|(node, s)| node == "node-two" && *s == pb::NodeState::Gone);
        if gone && !published_after_gone {
            published_after_gone = true;
            // After GONE: the first node still streams, the second no longer does.
            two.publish(2003..=2003).await;
            one.publish(1003..=1003).await;
        }
        if ports.contains(&1003) {
            break;
        }
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("the relay keeps the stream going")
            .expect("stream")
            .expect("open");
        match message.event {
            Some(pb::get_flows_response::Event::NodeStatus(node)) => states.push((
                node.node,
                pb::NodeState::try_from(node.state).unwrap_or_default(),
            )),
            Some(pb::get_flows_response::Event::Flow(flow)) => ports.push(source_port(&flow)),
            _ => {}
        }
    }
    ports.sort();
    assert_eq!(
        ports,
        vec![1000, 1001, 1002, 1003, 2000, 2001, 2002],
        "both nodes' records, and none of the second's after it was gone"
    );
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let nodes: Vec<&str> = status.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(
        nodes,
        ["node-one"],
        "GetStatus lists the nodes the Service has now"
    );
    stop.cancel();
}

/// A relay in process over `peers`, listening on loopback with `tls`.
async fn relay(peers: PeerSet, tls: Option<TlsFiles>) -> SocketAddr {
    let (service, limits) = relay_service(peers);
    let listeners = Listeners::bind_tcp("127.0.0.1:0".parse().unwrap(), tls.as_ref())
        .await
        .unwrap();
    let addr = listeners.tcp_addr().unwrap();
    tokio::spawn(api::serve_service(
        flowd::relay::PassThrough::new(service, limits.max_request_bytes),
        limits,
        listeners,
        CancellationToken::new(),
    ));
    addr
}

/// The relay's web UI in process over `peers`, on plain loopback.
async fn relay_ui(peers: PeerSet) -> SocketAddr {
    let (service, _) = relay_service(peers);
    let listeners = Listeners::bind_tcp("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let addr = listeners.tcp_addr().unwrap();
    tokio::spawn(flowd::ui::serve(
        flowd::ui::router(Arc::new(service)),
        listeners,
        CancellationToken::new(),
    ));
    addr
}

fn relay_service(peers: PeerSet) -> (RelayService, api::ApiLimits) {
    let options = RelayOptions {
        name: "relay".into(),
        peers,
        timing: PeerTiming {
            connect_timeout: Duration::from_secs(2),
            ..PeerTiming::default()
        },
        peer_buffer: 64,
        checkpoint_interval: Duration::from_millis(100),
        limits: api::ApiLimits::default(),
    };
    let limits = options.limits;
    (RelayService::new(options), limits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_on_both_sides_of_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    support::tls::certificates(dir.path());
    let p = |name: &str| dir.path().join(name);
    let agent_tls = TlsFiles {
        cert: p("server.pem"),
        key: p("server.key"),
        client_ca: Some(p("ca.pem")),
    };
    let one = agent_with("tls-one", Some(agent_tls.clone()), u64::MAX).await;
    let two = agent_with("tls-two", Some(agent_tls), u64::MAX).await;
    one.publish(1000..=1001).await;
    two.publish(2000..=2001).await;
    let as_relay = client::ClientTls {
        ca: Some(p("ca.pem")),
        cert: Some(p("relay.pem")),
        key: Some(p("relay.key")),
        server_name: None,
    };
    let peers = |tls: &client::ClientTls| {
        [one.addr, two.addr]
            .map(|addr| PeerTarget {
                address: addr.to_string(),
                tls: Some(tls.clone()),
            })
            .to_vec()
    };
    let relay_tls = TlsFiles {
        cert: p("relay.pem"),
        key: p("relay.key"),
        client_ca: Some(p("ca.pem")),
    };
    let addr = relay(PeerSet::fixed(peers(&as_relay)), Some(relay_tls.clone())).await;
    let consumer = client::ClientTls {
        ca: Some(p("ca.pem")),
        cert: Some(p("client.pem")),
        key: Some(p("client.key")),
        server_name: None,
    };
    let mut client = client::connect_tcp(addr, Some(&consumer)).await.unwrap();
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            last: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ports = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(pb::get_flows_response::Event::Flow(flow)) = message.event {
            ports.push(source_port(&flow));
        }
    }
    ports.sort();
    assert_eq!(ports, [1000, 1001, 2000, 2001], "both agents, over TLS");

    // A consumer without a certificate is refused by the relay.
    let anonymous = client::ClientTls {
        ca: Some(p("ca.pem")),
        ..Default::default()
    };
    assert!(
        support::tls::refused(addr, Some(&anonymous)).await,
        "the relay requires client certificates"
    );

    // A relay without a client certificate is refused by the agents: it says so per node.
    let no_cert = client::ClientTls {
        ca: Some(p("ca.pem")),
        ..Default::default()
    };
    let addr = relay(PeerSet::fixed(peers(&no_cert)), Some(relay_tls)).await;
    let mut client = client::connect_tcp(addr, Some(&consumer)).await.unwrap();
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.nodes.len(), 2);
    for node in &status.nodes {
        assert_eq!(
            node.state,
            pb::NodeState::Unavailable as i32,
            "an agent refuses a relay without a certificate: {node:?}"
        );
        assert!(!node.message.is_empty(), "and the reason is given");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_retention_passed_is_a_gap_naming_the_node() {
    let one_record = {
        let mut flow = flowd::flow::wire::to_proto(&FlowRecord::sample(1));
        flow.cursor = 1;
        flow.recorded_time = Some(flowd::flow::wire::timestamp(std::time::SystemTime::now()));
        prost::Message::encoded_len(&flow) as u64
    };
    let node = agent_with("short-memory", None, one_record * 10).await;
    node.publish(1..=40).await;
    // Retention by size only: the samples ended at the epoch, which an age limit would take
    // whole.
    node.hub
        .store()
        .enforce_retention(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    let (first, last) = node.hub.store().bounds().unwrap().expect("some left");
    assert!(first > 1, "retention removed the oldest");
    let addr = relay(
        PeerSet::fixed(vec![PeerTarget {
            address: node.addr.to_string(),
            tls: None,
        }]),
        None,
    )
    .await;
    let position = Position {
        cursors: [("short-memory".to_owned(), 0)].into_iter().collect(),
        created_ns: 0,
    };
    let mut client = client::connect_tcp(addr, None).await.unwrap();
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            resume_token: position.encode(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut gaps = Vec::new();
    let mut cursors = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        match message.event {
            Some(pb::get_flows_response::Event::LostRecords(lost)) => gaps.push(lost),
            Some(pb::get_flows_response::Event::Flow(flow)) => cursors.push(flow.cursor),
            _ => {}
        }
    }
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].node, "short-memory");
    assert_eq!(gaps[0].count, first - 1, "the records retention removed");
    assert_eq!(
        cursors,
        (first..=last).collect::<Vec<_>>(),
        "then everything it holds"
    );
}

fn fixed(addresses: &[String]) -> PeerSet {
    PeerSet::fixed(
        addresses
            .iter()
            .map(|address| PeerTarget {
                address: address.clone(),
                tls: None,
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_graph_adds_up_its_nodes_and_names_the_missing_one() {
    let (one, two) = (agent("graph-one").await, agent("graph-two").await);
    one.publish(1000..=1001).await;
    two.publish(2000..=2002).await;
    // Nothing listens here: that node's graph is missing, and the answer says so.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = gone.local_addr().unwrap().to_string();
    drop(gone);
    let peers = [one.addr.to_string(), two.addr.to_string(), nobody.clone()];
    let addr = relay(fixed(&peers), None).await;
    let mut client = client::connect_tcp(addr, None).await.unwrap();
    let window = pb::GetGraphRequest {
        since: Some(pbjson_types::Timestamp::default()),
        until: Some(pbjson_types::Timestamp {
            seconds: 86_400,
            nanos: 0,
        }),
        ..Default::default()
    };
    let graph = client.get_graph(window).await.unwrap().into_inner();
    assert_eq!(graph.flows, 5, "{graph:?}");
    assert_eq!(graph.edges.len(), 1, "the same two addresses on both nodes");
    assert_eq!(graph.edges[0].connections, 5);
    assert_eq!(graph.unavailable.len(), 1, "{:?}", graph.unavailable);
    assert_eq!(graph.unavailable[0].address, nobody);

    // The cluster's page reads the same graph as JSON.
    let ui = relay_ui(fixed(&peers[..2])).await;
    let answer = tokio::task::spawn_blocking(move || {
        support::http::post_json(
            ui,
            "/api/v1/graph",
            r#"{"since": "1970-01-01T00:00:00Z", "until": "1970-01-02T00:00:00Z"}"#,
        )
    })
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["flows"], "5", "{json}");
    assert_eq!(json["edges"][0]["connections"], "5", "{json}");
}

fn seed_file(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples/seed")
        .join(name)
}

/// The engine's connection to the core on `port`, denied at the core's ingress by the seed's
/// default deny, as a node records it.
fn denied_engine_to_core(node: &str, port: u32) -> pb::Flow {
    let pod = |ip: &str, name: &str, workload: (&str, &str), port: u32| pb::Endpoint {
        ip: ip.into(),
        port,
        kind: pb::EndpointKind::Pod as i32,
        namespace: "fmeserver".into(),
        name: name.into(),
        workload: Some(pb::Workload {
            kind: workload.0.into(),
            name: workload.1.into(),
        }),
        ..Default::default()
    };
    let now = flowd::flow::wire::timestamp(std::time::SystemTime::now());
    pb::Flow {
        node: node.into(),
        protocol: pb::Protocol::Tcp as i32,
        start_time: Some(now),
        end_time: Some(now),
        source: Some(pod(
            "198.18.0.1",
            "engine-standard-group-5d9c7b-x2x7q",
            ("Deployment", "engine-standard-group"),
            40_000,
        )),
        destination: Some(pod("198.18.0.2", "core-0", ("StatefulSet", "core"), port)),
        verdict: pb::Verdict::Denied as i32,
        connections: 1,
        ingress: Some(pb::PolicyDecision {
            allowed: false,
            policy: Some(pb::PolicyRef {
                kind: "CalicoNetworkPolicy".into(),
                tier: "default".into(),
                namespace: "fmeserver".into(),
                name: "default-deny-fmeserver".into(),
                rule_index: -1,
                rule_name: String::new(),
            }),
            action: "EndOfTierDeny".into(),
            trace: Vec::new(),
        }),
        ..Default::default()
    }
}

/// Two nodes saw the denied edge on different ports; the relay's what-if is of the one
/// proposal it shows, checked on both: the other node's port stays denied under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_recommendation_is_checked_on_every_node() {
    let policies = || {
        Some(Arc::new(flowd::attribution::Attributor::load(
            &[seed_file("policies.yaml")],
            &[seed_file("cluster.yaml")],
        )))
    };
    let one = agent_serving("rec-one", None, u64::MAX, policies()).await;
    let two = agent_serving("rec-two", None, u64::MAX, policies()).await;
    one.hub
        .store()
        .append(vec![
            denied_engine_to_core("rec-one", 42001),
            denied_engine_to_core("rec-one", 42001),
        ])
        .unwrap();
    two.hub
        .store()
        .append(vec![denied_engine_to_core("rec-two", 42500)])
        .unwrap();
    let addr = relay(fixed(&[one.addr.to_string(), two.addr.to_string()]), None).await;
    let mut client = client::connect_tcp(addr, None).await.unwrap();
    let answer = client
        .recommend_policy(pb::RecommendPolicyRequest {
            source: "workload:fmeserver/Deployment/engine-standard-group".into(),
            destination: "workload:fmeserver/StatefulSet/core".into(),
            protocol: pb::Protocol::Tcp as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.yaml.contains("42001"), "{}", answer.yaml);
    assert!(
        !answer.yaml.contains("42500"),
        "node one's proposal: {}",
        answer.yaml
    );
    assert_eq!(answer.side, pb::PolicySide::Ingress as i32);
    let what_if = answer.what_if.expect("a what-if");
    assert_eq!(
        (what_if.edge_allowed, what_if.edge_still_denied),
        (2, 1),
        "node two checked node one's proposal: {what_if:?}"
    );
    assert_eq!(what_if.newly_denied, 0, "{what_if:?}");
}
