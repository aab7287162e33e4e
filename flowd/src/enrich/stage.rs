//! The enrichment stage, and the file source that keeps the index current.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use tokio_util::sync::CancellationToken;

use super::{cgroups::CgroupPods, load_paths, EndpointKind, MetadataIndex};
use crate::{flow::FlowRecord, pipeline::Stage};

/// Swapped whole on reload: lookups never see a half-built index.
pub type SharedIndex = Arc<RwLock<Arc<MetadataIndex>>>;

/// The enrichment stage: records in, the same records with their endpoints named out. A local
/// process's cgroup names its pod when the address does not (host-network pods).
pub struct Enrichment {
    pub index: SharedIndex,
    pub cgroups: Option<Arc<CgroupPods>>,
}

impl Stage for Enrichment {
    type Input = FlowRecord;
    type Output = FlowRecord;
    const NAME: &'static str = "enrichment";

    fn process(&mut self, mut records: Vec<FlowRecord>) -> Vec<FlowRecord> {
        let Some(current) = self.index.read().map(|i| i.clone()).ok() else {
            return records;
        };
        let queries: Vec<_> = records
            .iter()
            .flat_map(|r| [(r.source.ip, r.start), (r.destination.ip, r.start)])
            .collect();
        let mut found = current.lookup_many(&queries).into_iter();
        for record in &mut records {
            record.source_meta = found.next();
            record.destination_meta = found.next();
            if let (Some(process), Some(cgroups)) = (&record.process, &self.cgroups) {
                let local = if process.of_source {
                    &mut record.source_meta
                } else {
                    &mut record.destination_meta
                };
                let named = local.as_ref().is_some_and(|m| m.kind == EndpointKind::Pod);
                if !named {
                    if let Some(pod) = cgroups
                        .pod_uid(process.cgroup_id)
                        .and_then(|uid| current.pod_by_uid(&uid))
                    {
                        *local = Some(pod);
                    }
                }
            }
        }
        records
    }
}

/// Loads `paths` into a finished index, logging every problem (which never stops the rest).
pub fn load(paths: &[PathBuf]) -> MetadataIndex {
    let (mut index, report) = load_paths(paths);
    for error in &report.errors {
        tracing::warn!(error = %error, "metadata object skipped");
    }
    for ((file, kind), objects) in &report.unused {
        tracing::warn!(
            file = %file.display(),
            kind = %kind,
            objects,
            reads = super::objects::METADATA_KINDS,
            "metadata objects of a kind enrichment does not read were skipped (policies belong in \
             policyFiles)"
        );
    }
    index.finish();
    tracing::info!(
        objects = report.objects,
        pods = index.pods(),
        "metadata loaded"
    );
    index
}

fn newest_change(paths: &[PathBuf]) -> Option<SystemTime> {
    paths
        .iter()
        .flat_map(|path| {
            let mut times = vec![std::fs::metadata(path).and_then(|m| m.modified()).ok()];
            if path.is_dir() {
                if let Ok(entries) = std::fs::read_dir(path) {
                    times.extend(
                        entries
                            .filter_map(Result::ok)
                            .map(|e| e.metadata().and_then(|m| m.modified()).ok()),
                    );
                }
            }
            times
        })
        .flatten()
        .max()
}

/// Reloads the files when they change (a ConfigMap update, a new file in the directory).
pub async fn watch_files(
    paths: Vec<PathBuf>,
    index: SharedIndex,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut seen = newest_change(&paths);
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let changed = newest_change(&paths);
        if changed == seen {
            continue;
        }
        seen = changed;
        let paths = paths.clone();
        match tokio::task::spawn_blocking(move || load(&paths)).await {
            Ok(fresh) => {
                if let Ok(mut current) = index.write() {
                    *current = Arc::new(fresh);
                }
            }
            Err(err) => tracing::warn!(error = %err, "reloading metadata failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::MetadataExt as _, path::Path};

    use super::*;
    use crate::{
        enrich::{parse_objects, LoadReport},
        model::Process,
    };

    const UID: &str = "0b7a6f6e-4c1d-4f2e-9a63-8a3b8a1c2d3e";

    /// A pod known by address (198.18.0.1) and a host-network pod known only by its UID.
    fn index() -> SharedIndex {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: shop, uid: \"1\"}}\n\
             status: {{podIP: 198.18.0.1, startTime: \"2026-01-01T00:00:00Z\"}}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {{name: agent, namespace: infra, uid: \"{UID}\"}}\n\
             spec: {{hostNetwork: true}}\nstatus: {{startTime: \"2026-01-01T00:00:00Z\"}}\n"
        );
        let mut index = MetadataIndex::default();
        let mut report = LoadReport::default();
        parse_objects(Path::new("pods.yaml"), &text, &mut index, &mut report);
        index.finish();
        Arc::new(RwLock::new(Arc::new(index)))
    }

    #[test]
    fn objects_of_kinds_enrichment_does_not_read_are_counted_by_file_and_kind() {
        let text = "apiVersion: v1\nkind: List\nitems:\n\
            - {apiVersion: v1, kind: Pod, metadata: {name: web, namespace: shop}, spec: {serviceAccountName: a}, status: {podIP: 198.18.0.1}}\n\
            - {apiVersion: v1, kind: ServiceAccount, metadata: {name: a, namespace: shop, labels: {tier: backend}}}\n\
            - {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: shop}}\n\
            - {apiVersion: v1, kind: ConfigMap, metadata: {name: b, namespace: shop}}\n\
            - {apiVersion: policy.networking.k8s.io/v1alpha1, kind: AdminNetworkPolicy, metadata: {name: x}}\n\
            - {apiVersion: v1, metadata: {name: nameless}}\n";
        let mut index = MetadataIndex::default();
        let mut report = LoadReport::default();
        parse_objects(Path::new("cluster.yaml"), text, &mut index, &mut report);
        assert_eq!(report.objects, 2, "the pod and its service account");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let unused: Vec<(&str, usize)> = report
            .unused
            .iter()
            .map(|((file, kind), n)| {
                assert_eq!(file, Path::new("cluster.yaml"));
                (kind.as_str(), *n)
            })
            .collect();
        assert_eq!(
            unused,
            [
                ("(no kind)", 1),
                ("AdminNetworkPolicy", 1),
                ("ConfigMap", 2)
            ]
        );
        index.finish();
        let web = index.lookup("198.18.0.1".parse().unwrap(), SystemTime::now());
        assert_eq!(
            web.service_account_labels.get("tier").map(String::as_str),
            Some("backend"),
            "the service account's labels reach its pod"
        );
    }

    fn names(record: &FlowRecord) -> [Option<(EndpointKind, String)>; 2] {
        [&record.source_meta, &record.destination_meta]
            .map(|m| m.as_ref().map(|m| (m.kind, m.name.clone())))
    }

    #[test]
    fn endpoints_are_named_by_address_and_unknown_addresses_are_world() {
        let mut stage = Enrichment {
            index: index(),
            cgroups: None,
        };
        let mut record = FlowRecord::sample(40000);
        record.source.ip = "198.18.0.1".parse().unwrap();
        record.destination.ip = "198.19.9.9".parse().unwrap();
        let out = stage.process(vec![record]);
        assert_eq!(
            names(&out[0]),
            [
                Some((EndpointKind::Pod, "web".to_owned())),
                Some((EndpointKind::WorldPrivate, String::new()))
            ]
        );
    }

    #[test]
    fn a_local_socket_cgroup_names_its_pod_when_the_address_does_not() {
        // A cgroup tree as the kubelet lays it out; the cgroup id is the directory's inode.
        let root = tempfile::tempdir().unwrap();
        let pod_cgroup = root
            .path()
            .join(format!("kubepods/besteffort/pod{UID}/container"));
        std::fs::create_dir_all(&pod_cgroup).unwrap();
        let cgroup_id = std::fs::metadata(&pod_cgroup).unwrap().ino();
        let mut stage = Enrichment {
            index: index(),
            cgroups: Some(Arc::new(CgroupPods::new(root.path().to_owned()))),
        };
        let mut record = FlowRecord::sample(40000);
        record.source.ip = "198.19.0.7".parse().unwrap(); // the node's address
        record.destination.ip = "198.18.0.1".parse().unwrap();
        let mut from_server = record.clone();
        record.process = Some(Process {
            pid: 7,
            command: "agent".into(),
            cgroup_id,
            of_source: true,
        });
        from_server.process = Some(Process {
            pid: 8,
            command: "web".into(),
            cgroup_id,
            of_source: false,
        });
        let out = stage.process(vec![record, from_server]);
        assert_eq!(
            names(&out[0])[0],
            Some((EndpointKind::Pod, "agent".to_owned())),
            "the client's cgroup names the host-network pod"
        );
        assert_eq!(
            names(&out[1])[1],
            Some((EndpointKind::Pod, "web".to_owned())),
            "a side its address already names as a pod keeps that name"
        );
    }
}
