//! The Kubernetes API source: list/watch pods, namespaces, services, EndpointSlices and nodes,
//! plus the metadata only of ReplicaSets and Jobs to follow owner chains to the workload, and of
//! ServiceAccounts for the labels Calico policies select them by
//! (kube-rs watchers: reconnects with backoff, relists after 410 Gone, bookmarks), keeping only
//! the fields enrichment reads, and rebuilding the index when something changed.
//!
//! Objects go through the same parser as metadata files, so both sources fill one index the same
//! way; capture never waits for any of this.

use std::{
    collections::HashMap,
    fmt::Debug,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, StreamExt as _};
use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        batch::v1::Job,
        core::v1::{Namespace, Node, Pod, Service, ServiceAccount},
        discovery::v1::EndpointSlice,
        networking::v1::NetworkPolicy,
    },
    serde::Serialize,
};
use kube::{
    core::PartialObjectMeta,
    runtime::{watcher, WatchStreamExt as _},
    Api, Client, Resource, ResourceExt as _,
};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{load_paths, objects::add_object, SharedIndex};
use crate::{
    policy::PolicySet,
    telemetry::{Counter, Telemetry},
};

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error(
        "cannot configure a Kubernetes client: {0}. In a pod the service account is used; \
         elsewhere set KUBECONFIG or ~/.kube/config"
    )]
    Config(#[source] kube::Error),
}

/// Every (API group, resource) the agent lists and watches: its ClusterRole must grant `list`
/// and `watch` on each (the deploy tests hold the shipped manifests to this).
pub const WATCHED_RESOURCES: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "namespaces"),
    ("", "services"),
    ("", "nodes"),
    ("", "serviceaccounts"),
    ("discovery.k8s.io", "endpointslices"),
    ("apps", "replicasets"),
    ("batch", "jobs"),
    ("networking.k8s.io", "networkpolicies"),
    ("projectcalico.org", "networkpolicies"),
    ("projectcalico.org", "globalnetworkpolicies"),
    ("projectcalico.org", "tiers"),
    ("projectcalico.org", "stagednetworkpolicies"),
    ("projectcalico.org", "stagedglobalnetworkpolicies"),
    ("projectcalico.org", "stagedkubernetesnetworkpolicies"),
    ("projectcalico.org", "networksets"),
    ("projectcalico.org", "globalnetworksets"),
    ("crd.projectcalico.org", "networkpolicies"),
    ("crd.projectcalico.org", "globalnetworkpolicies"),
    ("crd.projectcalico.org", "tiers"),
    ("crd.projectcalico.org", "stagednetworkpolicies"),
    ("crd.projectcalico.org", "stagedglobalnetworkpolicies"),
    ("crd.projectcalico.org", "stagedkubernetesnetworkpolicies"),
    ("crd.projectcalico.org", "networksets"),
    ("crd.projectcalico.org", "globalnetworksets"),
    ("policy.networking.k8s.io", "adminnetworkpolicies"),
    ("policy.networking.k8s.io", "baselineadminnetworkpolicies"),
    ("policy.networking.k8s.io", "clusternetworkpolicies"),
];

/// The trimmed objects of every watched kind, by kind then namespace/name.
#[derive(Default)]
struct Objects {
    by_kind: HashMap<&'static str, HashMap<String, Value>>,
    dirty: bool,
}

fn pick(object: &Value, path: &[&str]) -> Value {
    path.iter()
        .try_fold(object, |value, key| value.get(key))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Only what enrichment reads: keeps memory proportional to what is used on big clusters.
fn trim(kind: &str, object: &Value) -> Value {
    let metadata = json!({
        "name": pick(object, &["metadata", "name"]),
        "namespace": pick(object, &["metadata", "namespace"]),
        "uid": pick(object, &["metadata", "uid"]),
        "labels": pick(object, &["metadata", "labels"]),
        "ownerReferences": pick(object, &["metadata", "ownerReferences"]),
        "creationTimestamp": pick(object, &["metadata", "creationTimestamp"]),
    });
    let mut trimmed = json!({ "kind": kind, "metadata": metadata });
    match kind {
        "Pod" => {
            let containers: Vec<Value> = object
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map(|all| {
                    all.iter()
                        .map(|c| json!({ "ports": pick(c, &["ports"]) }))
                        .collect()
                })
                .unwrap_or_default();
            trimmed["spec"] = json!({
                "containers": containers,
                "nodeName": pick(object, &["spec", "nodeName"]),
                "hostNetwork": pick(object, &["spec", "hostNetwork"]),
                "serviceAccountName": pick(object, &["spec", "serviceAccountName"]),
            });
            trimmed["status"] = json!({
                "podIP": pick(object, &["status", "podIP"]),
                "podIPs": pick(object, &["status", "podIPs"]),
                "hostIP": pick(object, &["status", "hostIP"]),
                "startTime": pick(object, &["status", "startTime"]),
            });
        }
        "Service" => {
            trimmed["spec"] = json!({
                "clusterIP": pick(object, &["spec", "clusterIP"]),
                "clusterIPs": pick(object, &["spec", "clusterIPs"]),
                "ports": pick(object, &["spec", "ports"]),
            });
        }
        "EndpointSlice" => {
            trimmed["endpoints"] = pick(object, &["endpoints"]);
            trimmed["ports"] = pick(object, &["ports"]);
        }
        "Node" => {
            trimmed["status"] = json!({ "addresses": pick(object, &["status", "addresses"]) })
        }
        _ => {}
    }
    strip_nulls(&mut trimmed);
    trimmed
}

fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Follows one kind's watch `stream` until `shutdown`, keeping `objects` current.
async fn follow<K, S, F>(
    stream: S,
    kind: &'static str,
    keep: F,
    objects: Arc<Mutex<Objects>>,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) where
    K: Resource + Serialize,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    F: Fn(&str, &Value) -> Value + Send + 'static,
{
    let key = |object: &K| {
        format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        )
    };
    let value = |object: &K| serde_json::to_value(object).map(|v| keep(kind, &v)).ok();
    futures::pin_mut!(stream);
    let mut relisted: Option<HashMap<String, Value>> = None;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        let Some(event) = event else { return };
        let Ok(mut objects) = objects.lock() else {
            return;
        };
        match event {
            Ok(watcher::Event::Init) => relisted = Some(HashMap::new()),
            Ok(watcher::Event::InitApply(object)) => {
                if let (Some(buffer), Some(v)) = (relisted.as_mut(), value(&object)) {
                    buffer.insert(key(&object), v);
                }
            }
            Ok(watcher::Event::InitDone) => {
                // A full relist replaces the kind: objects deleted while away disappear.
                objects
                    .by_kind
                    .insert(kind, relisted.take().unwrap_or_default());
                objects.dirty = true;
                telemetry.set_counter(Counter::KubernetesSynced(kind), 1);
            }
            Ok(watcher::Event::Apply(object)) => {
                if let Some(v) = value(&object) {
                    objects
                        .by_kind
                        .entry(kind)
                        .or_default()
                        .insert(key(&object), v);
                    objects.dirty = true;
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                objects
                    .by_kind
                    .entry(kind)
                    .or_default()
                    .remove(&key(&object));
                objects.dirty = true;
            }
            Err(err) => {
                telemetry.add_counter(Counter::KubernetesWatchErrors, 1);
                telemetry.set_counter(Counter::KubernetesSynced(kind), 0);
                tracing::warn!(kind, error = %err, "Kubernetes watch failed; retrying with backoff");
            }
        }
    }
}

/// Every watched object, if anything changed since the last call.
fn changed_objects(objects: &Mutex<Objects>) -> Option<Vec<Value>> {
    let mut objects = objects.lock().ok()?;
    if !objects.dirty {
        return None;
    }
    objects.dirty = false;
    Some(
        objects
            .by_kind
            .values()
            .flat_map(|o| o.values().cloned())
            .collect(),
    )
}

/// Rebuilds the index from files and watched objects whenever something changed.
async fn rebuild(
    files: Vec<PathBuf>,
    objects: Arc<Mutex<Objects>>,
    index: SharedIndex,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let snapshot = changed_objects(&objects);
        let Some(snapshot) = snapshot else { continue };
        let files = files.clone();
        let built = tokio::task::spawn_blocking(move || {
            let (mut fresh, _) = load_paths(&files);
            for object in &snapshot {
                if let Err(err) = add_object(&mut fresh, object) {
                    tracing::debug!(error = %err, "Kubernetes object skipped");
                }
            }
            fresh.finish();
            fresh
        })
        .await;
        match built {
            Ok(fresh) => {
                if let Ok(mut current) = index.write() {
                    *current = Arc::new(fresh);
                }
            }
            Err(err) => tracing::warn!(error = %err, "rebuilding metadata failed"),
        }
    }
}

/// Starts the watchers and the rebuilder; they run until `shutdown`.
/// With `policies`, NetworkPolicies and the Calico kinds are watched too and published there
/// whenever they change; the policy stage subscribes to it.
pub fn start(
    client: Client,
    files: Vec<PathBuf>,
    index: SharedIndex,
    policies: Option<watch::Sender<Arc<PolicySet>>>,
    telemetry: Arc<Telemetry>,
    rebuild_interval: Duration,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let objects = Arc::new(Mutex::new(Objects::default()));
    // One watcher per kind; a macro because each kind is a different type parameter. Owner-only
    // kinds are watched as metadata: their pod templates are large and never read.
    macro_rules! follow_kind {
        ($object:ty, $kind:literal) => {
            tokio::spawn(follow(
                watcher(
                    Api::<$object>::all(client.clone()),
                    watcher::Config::default(),
                )
                .default_backoff(),
                $kind,
                trim,
                objects.clone(),
                telemetry.clone(),
                shutdown.clone(),
            ))
        };
    }
    let mut tasks = vec![
        follow_kind!(Pod, "Pod"),
        follow_kind!(Namespace, "Namespace"),
        follow_kind!(Service, "Service"),
        follow_kind!(EndpointSlice, "EndpointSlice"),
        follow_kind!(Node, "Node"),
        follow_kind!(PartialObjectMeta<ReplicaSet>, "ReplicaSet"),
        follow_kind!(PartialObjectMeta<Job>, "Job"),
        follow_kind!(PartialObjectMeta<ServiceAccount>, "ServiceAccount"),
    ];
    tasks.push(tokio::spawn(rebuild(
        files,
        objects,
        index,
        rebuild_interval,
        shutdown.clone(),
    )));
    if let Some(published) = policies {
        let policies = Arc::new(Mutex::new(Objects::default()));
        tasks.push(tokio::spawn(follow(
            watcher(
                Api::<NetworkPolicy>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff(),
            "NetworkPolicy",
            whole,
            policies.clone(),
            telemetry.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(follow_discovered(
            client.clone(),
            &CALICO_GROUPS,
            &CALICO_KINDS,
            policies.clone(),
            telemetry.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(follow_discovered(
            client,
            &ADMIN_GROUPS,
            &ADMIN_KINDS,
            policies.clone(),
            telemetry.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(reload_policies(
            policies,
            published,
            rebuild_interval,
            shutdown,
        )));
    }
    tasks
}

/// Policies are read whole (their specs are what matters), minus server bookkeeping.
fn whole(_kind: &str, object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    object
}

/// Calico's policy kinds, under the keys they are stored by (apart from Kubernetes' own).
const CALICO_KINDS: [(&str, &str); 8] = [
    ("NetworkPolicy", "calico/NetworkPolicy"),
    ("GlobalNetworkPolicy", "calico/GlobalNetworkPolicy"),
    ("Tier", "calico/Tier"),
    ("StagedNetworkPolicy", "calico/StagedNetworkPolicy"),
    (
        "StagedGlobalNetworkPolicy",
        "calico/StagedGlobalNetworkPolicy",
    ),
    (
        "StagedKubernetesNetworkPolicy",
        "calico/StagedKubernetesNetworkPolicy",
    ),
    ("NetworkSet", "calico/NetworkSet"),
    ("GlobalNetworkSet", "calico/GlobalNetworkSet"),
];

/// Calico's groups, preferred first: projectcalico.org/v3 through Calico's API server, else the
/// crd.projectcalico.org/v1 custom resources.
const CALICO_GROUPS: [&str; 2] = ["projectcalico.org", "crd.projectcalico.org"];

/// The SIG Network policy API: AdminNetworkPolicy and BaselineAdminNetworkPolicy in v1alpha1,
/// ClusterNetworkPolicy in v1alpha2 (each kind at the most stable version served).
const ADMIN_GROUPS: [&str; 1] = ["policy.networking.k8s.io"];
const ADMIN_KINDS: [(&str, &str); 3] = [
    ("AdminNetworkPolicy", "admin/AdminNetworkPolicy"),
    (
        "BaselineAdminNetworkPolicy",
        "admin/BaselineAdminNetworkPolicy",
    ),
    ("ClusterNetworkPolicy", "admin/ClusterNetworkPolicy"),
];

/// Watches whichever of `kinds` the cluster serves in `groups` (the first group serving a kind
/// wins). A cluster that serves none has nothing watched: those policies come from files only.
async fn follow_discovered(
    client: Client,
    groups: &'static [&'static str],
    kinds: &'static [(&'static str, &'static str)],
    objects: Arc<Mutex<Objects>>,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) {
    let discovery = match kube::discovery::Discovery::new(client.clone())
        .filter(groups)
        .run()
        .await
    {
        Ok(discovery) => discovery,
        Err(err) => {
            tracing::warn!(error = %err, ?groups, "policy kinds not discovered; they come from files only");
            return;
        }
    };
    let mut chosen: HashMap<&'static str, kube::discovery::ApiResource> = HashMap::new();
    for group in groups {
        let Some(group) = discovery.get(group) else {
            continue;
        };
        for (resource, _) in group.resources_by_stability() {
            if let Some((_, key)) = kinds.iter().find(|(kind, _)| *kind == resource.kind) {
                chosen.entry(key).or_insert(resource);
            }
        }
    }
    let watches = chosen.into_iter().map(|(key, resource)| {
        let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
        let (api_version, kind) = (resource.api_version.clone(), resource.kind.clone());
        // List items may omit their type; the loader needs it to tell Calico from Kubernetes.
        let keep = move |_: &str, object: &Value| {
            let mut object = whole("", object);
            object["apiVersion"] = Value::String(api_version.clone());
            object["kind"] = Value::String(kind.clone());
            object
        };
        follow(
            watcher(api, watcher::Config::default()).default_backoff(),
            key,
            keep,
            objects.clone(),
            telemetry.clone(),
            shutdown.clone(),
        )
    });
    futures::future::join_all(watches).await;
}

/// Publishes the API's policies whenever they changed.
async fn reload_policies(
    objects: Arc<Mutex<Objects>>,
    published: watch::Sender<Arc<PolicySet>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let items = changed_objects(&objects);
        let Some(items) = items else { continue };
        let loaded = crate::policy::load_values(&items, "kubernetes-api");
        for error in &loaded.errors {
            tracing::warn!(error = %error, "policy from the API skipped");
        }
        for warning in &loaded.warnings {
            tracing::warn!(warning = %warning, "policy from the API not evaluated as written");
        }
        tracing::info!(
            policies = loaded.policies.policies.len(),
            "policies from the Kubernetes API"
        );
        // No receiver means the policy stage is gone (shutting down): nothing to tell.
        let _ = published.send(Arc::new(loaded.policies));
    }
}

/// In-cluster configuration in a pod, the kubeconfig elsewhere. No request is made here.
pub async fn client() -> Result<Client, KubernetesError> {
    Client::try_default().await.map_err(KubernetesError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_what_enrichment_reads_only() {
        let pod = json!({
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "labels": {"a": "b"},
                          "managedFields": [{"big": "thing"}], "annotations": {"x": "y"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"podIP": "198.18.0.9", "conditions": [{"type": "Ready"}]}
        });
        let trimmed = trim("Pod", &pod);
        assert_eq!(trimmed["metadata"]["labels"]["a"], "b");
        assert_eq!(trimmed["status"]["podIP"], "198.18.0.9");
        assert!(trimmed["metadata"].get("managedFields").is_none());
        assert!(
            trimmed["spec"]["containers"][0].get("image").is_none(),
            "containers keep their ports only"
        );
        assert!(trimmed["status"].get("conditions").is_none());
        assert_eq!(
            trimmed["spec"]["containers"][0],
            json!({}),
            "no nulls left to trip the parser"
        );
    }
}
