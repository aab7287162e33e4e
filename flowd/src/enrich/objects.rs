//! Kubernetes objects as `kubectl get -o yaml|json` prints them: single documents, multi-document
//! YAML, or a `List`. Only the fields enrichment needs are kept, so memory stays small.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use flowd_policy::{
    objects::{
        parse_endpoint_slice, parse_metadata, parse_node, parse_pod, parse_service, ObjectMeta,
    },
    FieldError,
};
use serde::Deserialize;

use super::index::MetadataIndex;
use crate::model::Workload;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata file {path}, {object}: {message}")]
    Object {
        path: PathBuf,
        object: String,
        message: String,
    },
}

/// What one load found: objects indexed, and per-object problems (the rest still loads).
#[derive(Debug, Default)]
pub struct LoadReport {
    pub objects: usize,
    pub errors: Vec<MetadataError>,
    /// Objects of kinds enrichment does not read, counted by file and kind: reported, so a
    /// file that was meant to say something (a policy, a ServiceAccount) is not silently lost.
    pub unused: BTreeMap<(PathBuf, String), usize>,
}

/// The kinds enrichment reads from metadata files, for messages.
pub const METADATA_KINDS: &str =
    "Pod, ReplicaSet, Job, Namespace, ServiceAccount, Service, EndpointSlice, Node";

fn field_error(error: FieldError) -> String {
    format!("field {}: {}", error.path, error.message)
}

fn parse_time(text: &Option<String>) -> Option<std::time::SystemTime> {
    text.as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
}

pub(crate) fn add_object(
    index: &mut MetadataIndex,
    value: &serde_json::Value,
) -> Result<bool, String> {
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let meta = parse_metadata(value).map_err(field_error)?;
    let controller = |meta: &ObjectMeta| {
        meta.controller
            .as_ref()
            .map(|owner| Workload::new(&owner.kind, &owner.name))
    };
    match kind {
        "Pod" => {
            let pod = parse_pod(value).map_err(field_error)?;
            let mut ips = pod.ips;
            if pod.host_network {
                // Host-network pods share the node's address; the node entry names it.
                ips.clear();
            }
            let since = parse_time(&pod.started).or_else(|| parse_time(&pod.meta.created));
            let owner = controller(&pod.meta);
            index.add_pod(super::index::PodInfo {
                named_ports: pod.named_ports,
                uid: pod.meta.uid,
                namespace: pod.meta.namespace,
                name: pod.meta.name,
                owner,
                labels: pod.meta.labels,
                node: pod.node,
                service_account: pod.service_account,
                host_ip: pod.host_ip,
                ips,
                since,
            });
            Ok(true)
        }
        "ReplicaSet" | "Job" => {
            index.add_owner(kind, &meta.namespace, &meta.name, controller(&meta));
            Ok(true)
        }
        "Namespace" => {
            index.add_namespace(&meta.name, meta.labels);
            Ok(true)
        }
        "ServiceAccount" => {
            index.add_service_account(&meta.namespace, &meta.name, meta.labels);
            Ok(true)
        }
        "Service" => {
            let service = parse_service(value).map_err(field_error)?;
            index.add_service(
                &meta.namespace,
                &meta.name,
                &service.cluster_ips,
                &service.ports,
            );
            Ok(true)
        }
        "EndpointSlice" => {
            let slice = parse_endpoint_slice(value).map_err(field_error)?;
            index.add_backends(
                &meta.namespace,
                &slice.service,
                &slice.addresses,
                &slice.ports,
            );
            Ok(true)
        }
        "Node" => {
            let node = parse_node(value).map_err(field_error)?;
            index.add_node(&meta.name, meta.labels, &node.addresses);
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn describe(value: &serde_json::Value, position: usize) -> String {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("object");
    let meta = value.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(|n| n.as_str());
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(|n| n.as_str());
    match (namespace, name) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => format!("{kind} #{position}"),
    }
}

/// Indexes every object of `text` (YAML or JSON, one or many documents, or a List).
pub fn parse_objects(path: &Path, text: &str, index: &mut MetadataIndex, report: &mut LoadReport) {
    let mut position = 0;
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        position += 1;
        let value = match serde_json::Value::deserialize(document) {
            Ok(value) => value,
            Err(err) => {
                report.errors.push(MetadataError::Object {
                    path: path.to_owned(),
                    object: format!("document #{position}"),
                    message: err.to_string(),
                });
                // A syntax error ends the stream: nothing after it can be read reliably.
                return;
            }
        };
        let items = match value.get("kind").and_then(|k| k.as_str()) {
            Some(kind) if kind == "List" || kind.ends_with("List") => value
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default(),
            _ if value.is_null() => Vec::new(),
            _ => vec![value],
        };
        for (offset, item) in items.iter().enumerate() {
            match add_object(index, item) {
                Ok(true) => report.objects += 1,
                Ok(false) => {
                    let kind = item
                        .get("kind")
                        .and_then(|k| k.as_str())
                        .filter(|k| !k.is_empty())
                        .unwrap_or("(no kind)");
                    *report
                        .unused
                        .entry((path.to_owned(), kind.to_owned()))
                        .or_default() += 1;
                }
                Err(message) => report.errors.push(MetadataError::Object {
                    path: path.to_owned(),
                    object: describe(item, position + offset),
                    message,
                }),
            }
        }
    }
}

/// Loads files and directories (their *.yaml, *.yml and *.json files, sorted) into a new index.
pub fn load_paths(paths: &[PathBuf]) -> (MetadataIndex, LoadReport) {
    let mut index = MetadataIndex::default();
    let mut report = LoadReport::default();
    for path in paths {
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| {
                            matches!(
                                p.extension().and_then(|e| e.to_str()),
                                Some("yaml" | "yml" | "json")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => parse_objects(&file, &text, &mut index, &mut report),
                Err(source) => report
                    .errors
                    .push(MetadataError::Read { path: file, source }),
            }
        }
    }
    (index, report)
}
