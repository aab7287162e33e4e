//! The Kubernetes API source against a fake API server speaking the real list/watch protocol:
//! JSON lists with resourceVersion, watch event streams, bookmarks, a disconnect, 410 Gone.

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use axum::{body::Body, extract::State, http::Uri, response::Response, routing::get, Router};
use flowd::{
    attribution::{Attribution, Attributor},
    enrich::{kubernetes, EndpointKind, MetadataIndex, SharedIndex},
    flow::FlowRecord,
    pipeline,
    telemetry::{Counter, Telemetry},
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn pod(name: &str, ip: &str, rv: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "resourceVersion": rv, "labels": {"app": name},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name,
                                          "uid": "x", "controller": true}]},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i"}]},
        "status": {"podIP": ip}
    })
}

/// A pod made by ReplicaSet `web-canary`, whose name says nothing of its Deployment.
fn canary_pod() -> Value {
    let mut canary = pod("web-canary-abcde", "198.18.5.4", "6");
    canary["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": "web-canary", "uid": "y", "controller": true}]);
    canary
}

/// The ReplicaSet and Job lists, as metadata-only (PartialObjectMetadataList) answers.
async fn owners(uri: Uri) -> Response {
    if is_watch(&uri) {
        return watch(Vec::new(), true);
    }
    let (kind, owner) = if uri.path().ends_with("replicasets") {
        (
            "ReplicaSet",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "storefront",
                              "uid": "z", "controller": true}),
        )
    } else {
        (
            "Job",
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "name": "report",
                       "uid": "w", "controller": true}),
        )
    };
    let name = if kind == "ReplicaSet" {
        "web-canary"
    } else {
        "report-manual"
    };
    let item = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "4",
                     "ownerReferences": [owner]}});
    json_response(
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                         "metadata": {"resourceVersion": "4"}, "items": [item]}),
    )
}

/// Service account `default` of namespace shop (every fake pod runs as it), labelled
/// tier=backend; metadata only, as the agent asks for it.
async fn service_accounts(uri: Uri) -> Response {
    if is_watch(&uri) {
        return watch(Vec::new(), true);
    }
    let item = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": "default", "namespace": "shop", "resourceVersion": "4",
                     "labels": {"tier": "backend"}}});
    json_response(
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                         "metadata": {"resourceVersion": "4"}, "items": [item]}),
    )
}

fn list(kind: &str, rv: &str, items: Vec<Value>) -> Response {
    let body = json!({"apiVersion": "v1", "kind": format!("{kind}List"),
                      "metadata": {"resourceVersion": rv}, "items": items});
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A watch stream: these events, then either the end (a disconnect) or, with `hold`, silence.
fn watch(events: Vec<Value>, hold: bool) -> Response {
    let lines = events
        .into_iter()
        .map(|e| Ok::<_, std::io::Error>(format!("{e}\n")));
    let stream = futures::stream::iter(lines);
    let body = if hold {
        Body::from_stream(stream.chain(futures::stream::pending()))
    } else {
        Body::from_stream(stream)
    };
    Response::builder()
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

use futures::StreamExt as _;

#[derive(Default)]
struct Fake {
    pod_lists: AtomicUsize,
    pod_watches: AtomicUsize,
}

async fn pods(State(fake): State<Arc<Fake>>, uri: Uri) -> Response {
    let watching = is_watch(&uri);
    if !watching {
        return match fake.pod_lists.fetch_add(1, Ordering::SeqCst) {
            0 => list("Pod", "10", vec![pod("a", "198.18.5.1", "5"), canary_pod()]),
            // After the 410: a was deleted while the watch was away, c was created.
            _ => list(
                "Pod",
                "20",
                vec![
                    pod("b", "198.18.5.2", "11"),
                    pod("c", "198.18.5.3", "19"),
                    canary_pod(),
                ],
            ),
        };
    }
    match fake.pod_watches.fetch_add(1, Ordering::SeqCst) {
        // Events, a bookmark, then the server drops the connection.
        0 => watch(
            vec![
                json!({"type": "ADDED", "object": pod("b", "198.18.5.2", "11")}),
                json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                        "metadata": {"resourceVersion": "12"}}}),
            ],
            false,
        ),
        // The resumed watch is too old: 410 Gone, so the client must list again.
        1 => watch(
            vec![
                json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                    "status": "Failure", "message": "too old resource version: 12 (15)",
                    "reason": "Expired", "code": 410}}),
            ],
            false,
        ),
        _ => watch(Vec::new(), true),
    }
}

fn is_watch(uri: &Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
}

async fn empty(uri: Uri) -> Response {
    if is_watch(&uri) {
        watch(Vec::new(), true)
    } else {
        list("", "1", Vec::new())
    }
}

/// One NetworkPolicy isolating pod c's ingress in namespace shop.
async fn network_policies(uri: Uri) -> Response {
    if is_watch(&uri) {
        return watch(Vec::new(), true);
    }
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "isolate-c", "namespace": "shop", "resourceVersion": "3"},
        "spec": {"podSelector": {"matchLabels": {"app": "c"}}, "policyTypes": ["Ingress"]}
    });
    let body = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList",
                      "metadata": {"resourceVersion": "3"}, "items": [policy]});
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn json_response(body: Value) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Discovery: this cluster serves Calico's policies as custom resources, and the SIG Network
/// policy API in two versions (AdminNetworkPolicy in v1alpha1, ClusterNetworkPolicy in v1alpha2).
async fn api_groups() -> Response {
    let version = json!({"groupVersion": "crd.projectcalico.org/v1", "version": "v1"});
    let alpha1 =
        json!({"groupVersion": "policy.networking.k8s.io/v1alpha1", "version": "v1alpha1"});
    let alpha2 =
        json!({"groupVersion": "policy.networking.k8s.io/v1alpha2", "version": "v1alpha2"});
    json_response(
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "crd.projectcalico.org", "versions": [version], "preferredVersion": version},
            {"name": "policy.networking.k8s.io", "versions": [alpha2, alpha1], "preferredVersion": alpha2}
        ]}),
    )
}

async fn admin_v1alpha1_resources() -> Response {
    json_response(json!({"kind": "APIResourceList", "apiVersion": "v1",
    "groupVersion": "policy.networking.k8s.io/v1alpha1", "resources": [
        {"name": "adminnetworkpolicies", "singularName": "adminnetworkpolicy",
         "namespaced": false, "kind": "AdminNetworkPolicy", "verbs": ["get", "list", "watch"]}
    ]}))
}

async fn admin_v1alpha2_resources() -> Response {
    json_response(json!({"kind": "APIResourceList", "apiVersion": "v1",
    "groupVersion": "policy.networking.k8s.io/v1alpha2", "resources": [
        {"name": "clusternetworkpolicies", "singularName": "clusternetworkpolicy",
         "namespaced": false, "kind": "ClusterNetworkPolicy", "verbs": ["get", "list", "watch"]}
    ]}))
}

/// An AdminNetworkPolicy denying c's ingress on 6060 from b, by a named rule.
async fn admin_network_policies(uri: Uri) -> Response {
    if is_watch(&uri) {
        return watch(Vec::new(), true);
    }
    json_response(json!({"apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "AdminNetworkPolicyList", "metadata": {"resourceVersion": "5"},
        "items": [{"metadata": {"name": "guard-c", "resourceVersion": "5"},
                   "spec": {"priority": 5,
                            "subject": {"pods": {"namespaceSelector": {},
                                                 "podSelector": {"matchLabels": {"app": "c"}}}},
                            "ingress": [{"name": "no-6060-from-b", "action": "Deny",
                                         "from": [{"pods": {"namespaceSelector": {},
                                                   "podSelector": {"matchLabels": {"app": "b"}}}}],
                                         "ports": [{"portNumber": {"port": 6060}}]}]}}]}))
}

/// An Admin-tier ClusterNetworkPolicy denying b's egress to 5050.
async fn cluster_network_policies(uri: Uri) -> Response {
    if is_watch(&uri) {
        return watch(Vec::new(), true);
    }
    json_response(json!({"apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicyList", "metadata": {"resourceVersion": "5"},
        "items": [{"metadata": {"name": "guard-b", "resourceVersion": "5"},
                   "spec": {"tier": "Admin", "priority": 1,
                            "subject": {"pods": {"podSelector": {"matchLabels": {"app": "b"}}}},
                            "egress": [{"name": "no-5050", "action": "Deny",
                                        "to": [{"namespaces": {}}],
                                        "protocols": [{"tcp": {"destinationPort": {"number": 5050}}}]}]}}]}))
}

async fn calico_resources() -> Response {
    json_response(json!({"kind": "APIResourceList", "apiVersion": "v1",
    "groupVersion": "crd.projectcalico.org/v1", "resources": [
        {"name": "globalnetworkpolicies", "singularName": "globalnetworkpolicy",
         "namespaced": false, "kind": "GlobalNetworkPolicy", "verbs": ["get", "list", "watch"]},
        {"name": "globalnetworksets", "singularName": "globalnetworkset",
         "namespaced": false, "kind": "GlobalNetworkSet", "verbs": ["get", "list", "watch"]}
    ]}))
}

/// A GlobalNetworkSet naming the partners' addresses.
async fn global_network_sets(uri: Uri) -> Response {
    if is_watch(&uri) {
        return watch(Vec::new(), true);
    }
    json_response(json!({"apiVersion": "crd.projectcalico.org/v1",
        "kind": "GlobalNetworkSetList", "metadata": {"resourceVersion": "6"},
        "items": [{"metadata": {"name": "partners", "resourceVersion": "6",
                                "labels": {"role": "partner"}},
                   "spec": {"nets": ["203.0.113.0/24"]}}]}))
}

/// A Calico GlobalNetworkPolicy denying b's egress to port 9090, and to 7070 when b's service
/// account carries tier=backend; list items carry no type, as the API server sends them.
async fn global_network_policies(uri: Uri) -> Response {
    if is_watch(&uri) {
        return watch(Vec::new(), true);
    }
    json_response(json!({"apiVersion": "crd.projectcalico.org/v1",
        "kind": "GlobalNetworkPolicyList", "metadata": {"resourceVersion": "4"},
        "items": [{"metadata": {"name": "no-9090-from-b", "resourceVersion": "4"},
                   "spec": {"order": 10, "selector": "app == 'b'", "types": ["Egress"],
                            "egress": [{"action": "Deny", "protocol": "TCP",
                                        "destination": {"ports": [9090]}},
                                       {"action": "Deny", "protocol": "TCP",
                                        "source": {"serviceAccounts":
                                                   {"selector": "tier == 'backend'"}},
                                        "destination": {"ports": [7070]}},
                                       {"action": "Allow"}]}}]}))
}

fn names(index: &MetadataIndex) -> Vec<String> {
    ["198.18.5.1", "198.18.5.2", "198.18.5.3"]
        .iter()
        .map(|ip| index.lookup(ip.parse::<IpAddr>().unwrap(), SystemTime::now()))
        .filter(|m| m.kind == EndpointKind::Pod)
        .map(|m| m.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_relist_after_410_and_survive_disconnects() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/api/v1/pods", get(pods))
        .route("/api/v1/namespaces", get(empty))
        .route("/api/v1/services", get(empty))
        .route("/api/v1/nodes", get(empty))
        .route("/api/v1/serviceaccounts", get(service_accounts))
        .route("/apis/discovery.k8s.io/v1/endpointslices", get(empty))
        .route(
            "/apis/networking.k8s.io/v1/networkpolicies",
            get(network_policies),
        )
        .route("/apis/apps/v1/replicasets", get(owners))
        .route("/apis/batch/v1/jobs", get(owners))
        .route("/apis", get(api_groups))
        .route("/apis/crd.projectcalico.org/v1", get(calico_resources))
        .route(
            "/apis/policy.networking.k8s.io/v1alpha1",
            get(admin_v1alpha1_resources),
        )
        .route(
            "/apis/policy.networking.k8s.io/v1alpha2",
            get(admin_v1alpha2_resources),
        )
        .route(
            "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies",
            get(admin_network_policies),
        )
        .route(
            "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
            get(cluster_network_policies),
        )
        .route(
            "/apis/crd.projectcalico.org/v1/globalnetworkpolicies",
            get(global_network_policies),
        )
        .route(
            "/apis/crd.projectcalico.org/v1/globalnetworksets",
            get(global_network_sets),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let index: SharedIndex = Arc::new(std::sync::RwLock::new(Arc::new(MetadataIndex::default())));
    let telemetry = Arc::new(Telemetry::new("n", 1));
    let stop = CancellationToken::new();
    // The policy stage subscribes to what the Kubernetes source publishes.
    let (policies_tx, policies_rx) = tokio::sync::watch::channel(Arc::default());
    let (records_tx, records_rx) = tokio::sync::mpsc::channel(4);
    let (decided_tx, mut decided_rx) = tokio::sync::mpsc::channel(4);
    let policy_stage = tokio::spawn(pipeline::run(
        Attribution::new(Arc::new(Attributor::load(&[], &[])), Some(policies_rx)),
        records_rx,
        decided_tx,
    ));
    let tasks = kubernetes::start(
        client,
        Vec::new(),
        index.clone(),
        Some(policies_tx),
        telemetry.clone(),
        Duration::from_millis(50),
        stop.clone(),
    );

    // The index converges on the relisted state: a gone, b and c present.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current = index.read().unwrap().clone();
        let now = names(&current);
        if now == ["b", "c"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never converged; last saw {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        fake.pod_lists.load(Ordering::SeqCst) >= 2,
        "410 Gone made the watcher list again"
    );
    assert!(
        fake.pod_watches.load(Ordering::SeqCst) >= 3,
        "it watched again after the disconnect"
    );
    let current = index.read().unwrap().clone();
    let c = current.lookup("198.18.5.3".parse().unwrap(), SystemTime::now());
    assert_eq!(
        c.workload.as_ref().map(|w| w.kind.as_str()),
        Some("StatefulSet")
    );
    assert_eq!(
        telemetry.counter(&Counter::KubernetesSynced("Pod")),
        Some(1)
    );
    // The watched ReplicaSet names the Deployment; its name alone could not have.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current = index.read().unwrap().clone();
        let canary = current.lookup("198.18.5.4".parse().unwrap(), SystemTime::now());
        if canary
            .workload
            .as_ref()
            .map(|w| (w.kind.as_str(), w.name.as_str()))
            == Some(("Deployment", "storefront"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ReplicaSet's owner never reached the pod: {:?}",
            canary.workload
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The service account's labels reach the pods that run as it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current = index.read().unwrap().clone();
        let b = current.lookup("198.18.5.2".parse().unwrap(), SystemTime::now());
        if b.service_account_labels.get("tier").map(String::as_str) == Some("backend") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod b never got its service account's labels: {:?}",
            b.service_account_labels
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for kind in ["ReplicaSet", "Job", "ServiceAccount"] {
        assert_eq!(
            telemetry.counter(&Counter::KubernetesSynced(kind)),
            Some(1),
            "{kind}"
        );
    }

    let current = index.read().unwrap().clone();
    // The API's policies reach the policy stage: b -> c:8080 is denied by the Kubernetes
    // NetworkPolicy shop/isolate-c, b -> c:9090 already at egress by Calico's no-9090-from-b,
    // and b -> c:7070 by its rule on b's service account's labels.
    let record_to = |port: u16| {
        let mut record = FlowRecord::sample(40000);
        record.protocol = 6;
        record.source.ip = "198.18.5.2".parse().unwrap();
        record.destination.ip = "198.18.5.3".parse().unwrap();
        record.destination.port = port;
        record.source_meta = Some(current.lookup(record.source.ip, SystemTime::now()));
        record.destination_meta = Some(current.lookup(record.destination.ip, SystemTime::now()));
        record
    };
    let mut to_partner = record_to(443);
    to_partner.destination.ip = "203.0.113.5".parse().unwrap();
    to_partner.destination_meta =
        Some(current.lookup(to_partner.destination.ip, SystemTime::now()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let decision = loop {
        records_tx
            .send(vec![
                record_to(8080),
                record_to(9090),
                record_to(7070),
                record_to(6060),
                record_to(5050),
                to_partner.clone(),
            ])
            .await
            .unwrap();
        let decided = decided_rx.recv().await.expect("the policy stage answers");
        let partner = decided[5]
            .destination_meta
            .as_ref()
            .map(|m| (m.kind, m.name.clone()));
        let [decision, calico, by_account, by_admin, by_cluster] =
            [0, 1, 2, 3, 4].map(|i| decided[i].policy.clone().expect("a policy decision"));
        let admin_named = |side: &flowd::model::SideVerdict, kind: &str, rule: &str| {
            !side.allowed
                && side.policy.as_ref().map(|p| p.kind.as_str()) == Some(kind)
                && side.rule_name.as_deref() == Some(rule)
        };
        if !decision.allowed()
            && !calico.egress.allowed
            && admin_named(&by_admin.ingress, "AdminNetworkPolicy", "no-6060-from-b")
            && admin_named(&by_cluster.egress, "ClusterNetworkPolicy", "no-5050")
            && partner == Some((EndpointKind::NetworkSet, "partners".to_string()))
        {
            assert!(
                !by_account.egress.allowed,
                "b's service account is tier=backend: {by_account:?}"
            );
            assert_eq!(by_account.egress.rule, Some(1), "{by_account:?}");
            let policy = calico
                .egress
                .policy
                .clone()
                .expect("Calico's deciding policy");
            assert_eq!(
                (policy.name.as_str(), calico.egress.rule),
                ("no-9090-from-b", Some(0))
            );
            break decision;
        }
        assert!(
            Instant::now() < deadline,
            "the API's policies never reached the policy stage: 8080 {decision:?}, 9090 {calico:?}, \
             6060 {by_admin:?}, 5050 {by_cluster:?}, partner {partner:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let policy = decision.ingress.policy.clone().expect("deciding policy");
    assert_eq!(
        (policy.namespace.as_deref(), policy.name.as_str()),
        (Some("shop"), "isolate-c")
    );
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
    drop(records_tx);
    policy_stage.await.unwrap();
}
