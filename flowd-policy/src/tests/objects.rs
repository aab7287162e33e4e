//! Pod and Namespace objects, read once for the agent's index and the evaluator alike.

use serde_json::json;

use crate::endpoint::Protocol;
use crate::objects::{parse_namespace, parse_pod, OwnerRef};

#[test]
fn a_pod_gets_the_api_servers_defaults() {
    let pod = parse_pod(&json!({"kind": "Pod", "metadata": {"name": "web"}})).unwrap();
    assert_eq!(pod.meta.namespace, "default");
    assert_eq!(pod.service_account, "default");
    assert!(pod.ips.is_empty());
    assert_eq!(pod.meta.controller, None);
}

#[test]
fn a_dual_stack_pod_keeps_every_address_pod_ip_first() {
    let pod = parse_pod(&json!({
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1",
            "ownerReferences": [
                {"kind": "Node", "name": "n1"},
                {"kind": "ReplicaSet", "name": "web-5d9", "controller": true}]},
        "spec": {"nodeName": "n1", "serviceAccountName": "web",
            "containers": [{"ports": [
                {"containerPort": 8080, "name": "http"},
                {"containerPort": 9090},
                {"containerPort": 53, "name": "dns", "protocol": "UDP"}]}]},
        "status": {"podIP": "198.18.0.5", "hostIP": "198.18.0.1",
            "podIPs": [{"ip": "198.18.0.5"}, {"ip": "fd00::5"}],
            "startTime": "2026-12-01T10:00:00Z"}
    }))
    .unwrap();
    assert_eq!(
        pod.ips,
        vec![
            "198.18.0.5".parse::<std::net::IpAddr>().unwrap(),
            "fd00::5".parse().unwrap()
        ]
    );
    assert_eq!(pod.host_ip, Some("198.18.0.1".parse().unwrap()));
    assert_eq!(
        pod.meta.controller,
        Some(OwnerRef {
            kind: "ReplicaSet".into(),
            name: "web-5d9".into()
        }),
        "the controller reference wins over the first"
    );
    assert_eq!(pod.node, "n1");
    assert_eq!(pod.service_account, "web");
    let ports: Vec<_> = pod
        .named_ports
        .iter()
        .map(|p| (p.name.as_str(), p.port, p.protocol))
        .collect();
    assert_eq!(
        ports,
        vec![("http", 8080, Protocol::Tcp), ("dns", 53, Protocol::Udp)],
        "unnamed ports are not kept"
    );
    assert_eq!(pod.started.as_deref(), Some("2026-12-01T10:00:00Z"));
}

#[test]
fn bad_fields_are_named_by_path() {
    let err = parse_pod(&json!({"metadata": {"name": "web"},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 70000}]}]}}))
    .unwrap_err();
    assert_eq!(err.path, "spec.containers[0].ports[0].containerPort");
    let err =
        parse_pod(&json!({"metadata": {"name": "web"}, "status": {"podIP": "nope"}})).unwrap_err();
    assert_eq!(err.path, "status.podIP");
    let err = parse_pod(&json!({"metadata": {}})).unwrap_err();
    assert_eq!(err.path, "metadata.name");
}

#[test]
fn a_namespace_has_its_labels() {
    let namespace = parse_namespace(
        &json!({"kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "a"}}}),
    )
    .unwrap();
    assert_eq!(namespace.name, "shop");
    assert_eq!(namespace.labels.get("team").map(String::as_str), Some("a"));
}

/// A pod resolved from files carries its namespace's and its service account's labels; kinds
/// endpoints are not made of are reported once per file and kind.
#[test]
fn service_account_labels_reach_the_pods_that_run_as_it() {
    use crate::pods::{EndpointResolver as _, StaticPods};
    let loaded = StaticPods::load_str(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop}
spec: {serviceAccountName: backend}
status: {podIP: 198.18.0.9}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: backend, namespace: shop, labels: {tier: backend}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: backend, namespace: other, labels: {tier: elsewhere}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
"#,
        "cluster.yaml",
    );
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let api = loaded.pods.resolve("198.18.0.9").unwrap();
    assert_eq!(api.service_account.as_deref(), Some("backend"));
    assert_eq!(
        api.service_account_labels.get("tier").map(String::as_str),
        Some("backend")
    );
    assert_eq!(
        loaded.warnings,
        ["cluster.yaml: 2 object(s) of kind Deployment not read (endpoints come from Pod, Namespace, ServiceAccount, Service, EndpointSlice, Node)"]
    );
}

/// Services and EndpointSlices in the files: an endpoint address backs its service on the
/// slices' ports, a cluster IP is the service on its own ports.
#[test]
fn services_and_endpoint_slices_give_memberships_with_ports() {
    use crate::endpoint::ServiceMembership;
    use crate::pods::{EndpointResolver as _, StaticPods};
    let loaded = StaticPods::load_str(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop}
status: {podIP: 198.18.0.2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 198.18.1.1, ports: [{port: 80}, {port: 53, protocol: UDP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-a, namespace: shop, labels: {kubernetes.io/service-name: web}}
endpoints: [{addresses: [198.18.0.2]}]
ports: [{port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-b, namespace: shop, labels: {kubernetes.io/service-name: web}}
endpoints: [{addresses: [198.18.0.2]}]
ports: [{port: 5353, protocol: UDP}]
"#,
        "cluster.yaml",
    );
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let pod = loaded.pods.resolve("shop/web-0").unwrap();
    assert_eq!(
        pod.services,
        [ServiceMembership {
            service: "shop/web".into(),
            ports: vec![(Protocol::Tcp, 8080), (Protocol::Udp, 5353)],
        }]
    );
    let cluster_ip = loaded.pods.resolve("198.18.1.1").unwrap();
    assert_eq!(
        cluster_ip.services,
        [ServiceMembership {
            service: "shop/web".into(),
            ports: vec![(Protocol::Tcp, 80), (Protocol::Udp, 53)],
        }]
    );
}

/// A node's addresses resolve to a host endpoint with the node's labels (admin policies'
/// `nodes` peers), never to a pod.
#[test]
fn node_addresses_are_host_endpoints_with_the_node_labels() {
    use crate::pods::{EndpointResolver as _, StaticPods};
    let loaded = StaticPods::load_str(
        r#"
apiVersion: v1
kind: Node
metadata: {name: cp-1, labels: {node-role.kubernetes.io/control-plane: ""}}
status: {addresses: [{type: InternalIP, address: 198.18.9.1}, {type: Hostname, address: cp-1}]}
"#,
        "nodes.yaml",
    );
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let node = loaded.pods.resolve("198.18.9.1").unwrap();
    assert!(node.host && !node.is_pod(), "{node:?}");
    assert!(node
        .labels
        .contains_key("node-role.kubernetes.io/control-plane"));
}
