use std::{path::Path, time::Duration};

use super::*;
use crate::enrich::{parse_objects, LoadReport};

const OBJECTS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: fmeserver, labels: {team: gis}}
- apiVersion: v1
  kind: Pod
  metadata:
    name: engine-7d9f8c6b5-x2x4z
    namespace: fmeserver
    uid: "1111"
    labels: {app: engine, pod-template-hash: 7d9f8c6b5}
    ownerReferences: [{kind: ReplicaSet, name: engine-7d9f8c6b5}]
  spec: {nodeName: node-1, serviceAccountName: engine}
  status: {podIP: 198.18.0.1, podIPs: [{ip: 198.18.0.1}, {ip: "fd00:f10d::1"}], startTime: "2026-01-01T00:00:00Z"}
- apiVersion: v1
  kind: Pod
  metadata:
    name: core-0
    namespace: fmeserver
    labels: {statefulset.kubernetes.io/pod-name: core-0}
    ownerReferences: [{kind: StatefulSet, name: core}]
  spec: {nodeName: node-1}
  status: {podIP: 198.18.0.2, startTime: "2026-01-01T00:00:00Z"}
---
apiVersion: v1
kind: Pod
metadata:
  name: backup-28950000-abcde
  namespace: fmeserver
  ownerReferences: [{kind: Job, name: backup-28950000}]
status: {podIP: 198.18.0.2, startTime: "2026-06-01T00:00:00Z"}
---
{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "core", "namespace": "fmeserver"},
 "spec": {"clusterIP": "198.19.255.10"}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: core-abc
  namespace: fmeserver
  labels: {kubernetes.io/service-name: core}
endpoints: [{addresses: [198.18.0.2]}]
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 198.18.1.1}, {type: Hostname, address: node-1}]}
"#;

fn index() -> MetadataIndex {
    let mut index = MetadataIndex::default();
    let mut report = LoadReport::default();
    parse_objects(Path::new("cluster.yaml"), OBJECTS, &mut index, &mut report);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.objects, 7);
    index.finish();
    index
}

fn at(date: &str) -> SystemTime {
    humantime::parse_rfc3339(date).unwrap()
}

#[test]
fn pods_resolve_to_workloads_namespaces_and_services() {
    let index = index();
    let engine = index.lookup("198.18.0.1".parse().unwrap(), at("2026-03-01T00:00:00Z"));
    assert_eq!(engine.kind, EndpointKind::Pod);
    assert_eq!(
        (engine.namespace.as_str(), engine.name.as_str()),
        ("fmeserver", "engine-7d9f8c6b5-x2x4z")
    );
    assert_eq!(engine.workload, Some(Workload::new("Deployment", "engine")));
    assert_eq!(
        engine.namespace_labels.get("team").map(String::as_str),
        Some("gis")
    );
    assert_eq!(engine.service_account, "engine");
    let same = index.lookup("fd00:f10d::1".parse().unwrap(), at("2026-03-01T00:00:00Z"));
    assert!(
        Arc::ptr_eq(&engine, &same),
        "both addresses of a pod share one entry"
    );

    let core = index.lookup("198.18.0.2".parse().unwrap(), at("2026-03-01T00:00:00Z"));
    assert_eq!(core.workload, Some(Workload::new("StatefulSet", "core")));
    assert_eq!(core.services, vec!["fmeserver/core".to_owned()]);
}

#[test]
fn a_reused_address_does_not_relabel_older_flows() {
    let index = index();
    let before = index.lookup("198.18.0.2".parse().unwrap(), at("2026-05-31T23:59:00Z"));
    let after = index.lookup("198.18.0.2".parse().unwrap(), at("2026-06-01T00:00:01Z"));
    assert_eq!(before.name, "core-0");
    assert_eq!(after.name, "backup-28950000-abcde");
    assert_eq!(after.workload, Some(Workload::new("CronJob", "backup")));
}

#[test]
fn nodes_services_and_the_world() {
    let index = index();
    let now = SystemTime::now();
    assert_eq!(
        index.lookup("198.18.1.1".parse().unwrap(), now).kind,
        EndpointKind::Node
    );
    let service = index.lookup("198.19.255.10".parse().unwrap(), now);
    assert_eq!(
        (service.kind, service.name.as_str()),
        (EndpointKind::Service, "core")
    );
    assert_eq!(
        index.lookup("10.1.2.3".parse().unwrap(), now).kind,
        EndpointKind::WorldPrivate
    );
    assert_eq!(
        index.lookup("8.8.8.8".parse().unwrap(), now).kind,
        EndpointKind::WorldPublic
    );
    assert_eq!(
        index.lookup("fd12::1".parse().unwrap(), now).kind,
        EndpointKind::WorldPrivate
    );
    let _ = Duration::ZERO;
}

#[test]
fn malformed_objects_are_named_and_the_rest_still_loads() {
    let text = "kind: Pod\nmetadata: {name: bad, namespace: ns}\nstatus: {podIPs: 7}\n---\nkind: Namespace\nmetadata: {name: ok}\n";
    let mut index = MetadataIndex::default();
    let mut report = LoadReport::default();
    parse_objects(Path::new("m.yaml"), text, &mut index, &mut report);
    assert_eq!(report.objects, 1);
    let err = report.errors[0].to_string();
    assert!(
        err.contains("m.yaml") && err.contains("Pod ns/bad") && err.contains("status"),
        "{err}"
    );
}

#[test]
fn a_batch_answers_as_single_lookups_do_in_query_order() {
    let index = index();
    let queries: Vec<(IpAddr, SystemTime)> = [
        ("198.18.0.2", "2026-05-31T23:59:00Z"),
        ("8.8.8.8", "2026-05-31T23:59:00Z"),
        ("198.18.0.2", "2026-06-01T00:00:01Z"),
        ("198.19.255.10", "2026-06-01T00:00:01Z"),
        ("fd00:f10d::1", "2026-03-01T00:00:00Z"),
        ("10.1.2.3", "2026-03-01T00:00:00Z"),
    ]
    .iter()
    .map(|(ip, time)| (ip.parse().unwrap(), at(time)))
    .collect();
    let batch = index.lookup_many(&queries);
    assert_eq!(batch.len(), queries.len());
    for ((ip, time), meta) in queries.iter().zip(&batch) {
        assert_eq!(**meta, *index.lookup(*ip, *time), "{ip} at {time:?}");
    }
    let names: Vec<&str> = batch.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "core-0",
            "",
            "backup-28950000-abcde",
            "core",
            "engine-7d9f8c6b5-x2x4z",
            ""
        ]
    );
}

#[test]
fn replica_sets_and_jobs_in_files_lead_pods_to_their_real_workload() {
    // Names the controllers' conventions could not decode: only the owner objects tell.
    let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata:
    name: web-canary
    namespace: shop
    ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: storefront, controller: true}]
  spec: {replicas: 1}
- apiVersion: batch/v1
  kind: Job
  metadata:
    name: report-manual-run
    namespace: shop
    ownerReferences:
    - {apiVersion: v1, kind: ConfigMap, name: not-the-controller}
    - {apiVersion: batch/v1, kind: CronJob, name: report, controller: true}
- apiVersion: v1
  kind: Pod
  metadata:
    name: web-canary-abcde
    namespace: shop
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-canary, controller: true}]
  status: {podIP: 198.18.7.1}
- apiVersion: v1
  kind: Pod
  metadata:
    name: report-manual-run-xyz
    namespace: shop
    ownerReferences: [{apiVersion: batch/v1, kind: Job, name: report-manual-run, controller: true}]
  status: {podIP: 198.18.7.2}
"#;
    let mut index = MetadataIndex::default();
    let mut report = LoadReport::default();
    parse_objects(Path::new("owners.yaml"), text, &mut index, &mut report);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    index.finish();
    let now = SystemTime::now();
    let workload = |ip: &str| index.lookup(ip.parse().unwrap(), now).workload.clone();
    assert_eq!(
        workload("198.18.7.1"),
        Some(Workload::new("Deployment", "storefront"))
    );
    assert_eq!(
        workload("198.18.7.2"),
        Some(Workload::new("CronJob", "report"))
    );
}
