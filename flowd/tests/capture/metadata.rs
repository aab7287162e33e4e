//! Pods, workloads and services named from a metadata file.

use super::{common::*, *};

const CLUSTER: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: fmeserver, labels: {team: gis}}}
- apiVersion: v1
  kind: Pod
  metadata:
    name: engine-7d9f8c6b5-x2x4z
    namespace: fmeserver
    labels: {safe.k8s.fmeserver.component: engine, pod-template-hash: 7d9f8c6b5}
    ownerReferences: [{kind: ReplicaSet, name: engine-7d9f8c6b5}]
  spec: {nodeName: node-1}
  status: {podIP: 198.18.0.1, podIPs: [{ip: 198.18.0.1}, {ip: "fd00:f10d::1"}]}
- apiVersion: v1
  kind: Pod
  metadata:
    name: core-0
    namespace: fmeserver
    labels: {statefulset.kubernetes.io/pod-name: core-0, safe.k8s.fmeserver.component: core}
    ownerReferences: [{kind: StatefulSet, name: core}]
  spec: {nodeName: node-1}
  status: {podIP: 198.18.0.2}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: core-x1, namespace: fmeserver, labels: {kubernetes.io/service-name: core}}
  endpoints: [{addresses: [198.18.0.2]}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_name_their_pods_workloads_and_services_from_a_metadata_file() {
    if !privileged("flows_name_their_pods_workloads_and_services_from_a_metadata_file") {
        return;
    }
    let hosts = TwoHosts::create("meta").expect("testbed");
    let dir = tempfile::tempdir().unwrap();
    let metadata = dir.path().join("cluster.yaml");
    std::fs::write(&metadata, CLUSTER).unwrap();
    let agent = agent_on(
        &hosts,
        &[
            "--active-timeout",
            "1s",
            "--sweep-interval",
            "200ms",
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    let mut client = agent.client().await;
    let mut stream = client
        .get_flows(pb::GetFlowsRequest {
            follow: true,
            allow: vec![pb::FlowFilter {
                workload: vec!["Deployment/engine".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let tcp = tokio::task::block_in_place(|| {
        testbed::tcp_exchange(&hosts, IpAddr::V4(testbed::HOST_B_V4), 100, 100).expect("tcp")
    });
    let totals = collect_until(&mut stream, Duration::from_secs(10), |t| {
        t.contains_key(&id(TCP, tcp.client, tcp.server))
    })
    .await;
    let record = totals[&id(TCP, tcp.client, tcp.server)].last().clone();
    let source = record.source.expect("source");
    let destination = record.destination.expect("destination");
    assert_eq!(source.kind, pb::EndpointKind::Pod as i32);
    assert_eq!(
        (source.namespace.as_str(), source.name.as_str()),
        ("fmeserver", "engine-7d9f8c6b5-x2x4z")
    );
    assert_eq!(
        source.workload.map(|w| (w.kind, w.name)),
        Some(("Deployment".into(), "engine".into()))
    );
    assert_eq!(
        source
            .labels
            .get("safe.k8s.fmeserver.component")
            .map(String::as_str),
        Some("engine")
    );
    assert_eq!(destination.name, "core-0");
    assert_eq!(destination.workload.map(|w| w.name), Some("core".into()));
    assert_eq!(destination.services, vec!["fmeserver/core".to_owned()]);
    assert!(agent.terminate().success());
}
