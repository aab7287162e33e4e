//! Loading policy objects from YAML/JSON text, files and directories.
//!
//! Accepts what `kubectl get -o yaml|json` prints: single objects, multi-document
//! YAML and `kind: List`. Every problem becomes a `LoadError` naming the file,
//! object and field, and the other objects still load.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::admin_parse::{parse_admin_spec, AdminKind};
use crate::calico_parse::parse_calico_spec;
use crate::error::{FieldError, LoadError};
use crate::k8s_parse::{parse_cidr, parse_k8s_spec};
use crate::model::{
    NetworkSet, Policy, PolicyBody, PolicyKind, PolicySet, Tier, TierDefaultAction, DEFAULT_TIER,
    K8S_POLICY_ORDER,
};
use crate::value::{with_field, with_list, Node, Path};

/// Everything a load produced: what loaded, what failed, what was skipped.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub policies: PolicySet,
    pub errors: Vec<LoadError>,
    pub warnings: Vec<String>,
}

/// Load policies from text. `source` names the text in messages (a file name).
pub fn load_str(text: &str, source: &str) -> LoadResult {
    let mut out = LoadResult::default();
    load_text_into(text, source, &mut out);
    finish(&mut out);
    out
}

/// Load already-parsed objects, as a Kubernetes watch delivers them. `source` names them in
/// messages.
pub fn load_values(values: &[Value], source: &str) -> LoadResult {
    let mut out = LoadResult::default();
    for (i, value) in values.iter().enumerate() {
        let located = Located {
            value,
            locator: format!("object {i}"),
        };
        load_object(&located, source, &mut out);
    }
    finish(&mut out);
    out
}

/// Load files and directories (each directory: its *.yaml, *.yml and *.json
/// files, sorted by name, not recursive).
pub fn load_paths(paths: &[PathBuf]) -> LoadResult {
    let mut out = LoadResult::default();
    for file in expand_paths(paths, &mut out.errors) {
        match read_file(&file) {
            Ok((name, text)) => load_text_into(&text, &name, &mut out),
            Err(err) => out.errors.push(err),
        }
    }
    finish(&mut out);
    out
}

/// One file's name (as errors show it) and text.
pub(crate) fn read_file(file: &std::path::Path) -> Result<(String, String), LoadError> {
    let name = file.display().to_string();
    match std::fs::read_to_string(file) {
        Ok(text) => Ok((name, text)),
        Err(e) => Err(LoadError::Io {
            file: name,
            message: e.to_string(),
        }),
    }
}

/// Files named by `paths`, directories expanded; unreadable paths become errors.
pub(crate) fn expand_paths(paths: &[PathBuf], errors: &mut Vec<LoadError>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.is_file() && has_policy_extension(p))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => errors.push(LoadError::Io {
                    file: path.display().to_string(),
                    message: e.to_string(),
                }),
            }
        } else if path.exists() {
            files.push(path.clone());
        } else {
            errors.push(LoadError::Io {
                file: path.display().to_string(),
                message: "no such file or directory".into(),
            });
        }
    }
    files
}

fn has_policy_extension(p: &FsPath) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"))
        .unwrap_or(false)
}

/// One object found in a file, with a locator for messages when it is unnamed.
pub(crate) struct Located<'a> {
    pub value: &'a Value,
    pub locator: String,
}

/// Split text into documents. JSON (detected by its first character) may hold
/// several concatenated values; YAML may hold `---`-separated documents.
pub(crate) fn parse_documents(text: &str, source: &str) -> (Vec<Value>, Vec<LoadError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let stream = serde_json::Deserializer::from_str(trimmed).into_iter::<Value>();
        for (i, doc) in stream.enumerate() {
            match doc {
                Ok(v) => docs.push(v),
                Err(e) => {
                    errors.push(LoadError::Syntax {
                        file: source.to_string(),
                        document: i,
                        message: format!("invalid JSON: {e}"),
                    });
                    break;
                }
            }
        }
        return (docs, errors);
    }
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(trimmed).enumerate() {
        match Value::deserialize(doc) {
            Ok(v) => docs.push(v),
            Err(e) => {
                let mut message = format!("invalid YAML: {e}");
                if message.contains("enum") || message.contains("tag") {
                    message.push_str(
                        " (a value starting with '!' is a YAML tag: quote selectors such as \"!has(x)\")",
                    );
                }
                errors.push(LoadError::Syntax {
                    file: source.to_string(),
                    document: i,
                    message,
                });
                // The YAML parser cannot resynchronise after a syntax error.
                break;
            }
        }
    }
    (docs, errors)
}

/// Flatten documents and `kind: *List` objects into the objects they hold.
pub(crate) fn objects(docs: &[Value]) -> Vec<Located<'_>> {
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        match doc {
            Value::Null => {}
            Value::Array(items) => {
                for (j, item) in items.iter().enumerate() {
                    out.push(Located {
                        value: item,
                        locator: format!("document {i} [{j}]"),
                    });
                }
            }
            Value::Object(m) => {
                let is_list = m
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"))
                    && m.get("items").is_some();
                match (is_list, m.get("items")) {
                    (true, Some(Value::Array(items))) => {
                        for (j, item) in items.iter().enumerate() {
                            out.push(Located {
                                value: item,
                                locator: format!("document {i} items[{j}]"),
                            });
                        }
                    }
                    (true, Some(Value::Null)) => {}
                    _ => out.push(Located {
                        value: doc,
                        locator: format!("document {i}"),
                    }),
                }
            }
            other => out.push(Located {
                value: other,
                locator: format!("document {i}"),
            }),
        }
    }
    out
}

fn load_text_into(text: &str, source: &str, out: &mut LoadResult) {
    let (docs, errors) = parse_documents(text, source);
    out.errors.extend(errors);
    for obj in objects(&docs) {
        load_object(&obj, source, out);
    }
}

/// What an object is called in messages: "Kind ns/name", or its locator.
pub(crate) fn object_label(v: &Value, locator: &str) -> String {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("object");
    let meta = v.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    match (ns, name) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => format!("{kind} ({locator})"),
    }
}

enum ObjectKind {
    Policy(PolicyKind),
    Tier,
    NetworkSet { global: bool },
}

fn classify(api_version: &str, kind: &str) -> Option<ObjectKind> {
    let group = api_version.split('/').next().unwrap_or("");
    let calico = matches!(group, "projectcalico.org" | "crd.projectcalico.org");
    match (kind, calico, group) {
        ("NetworkPolicy", false, "networking.k8s.io") => {
            Some(ObjectKind::Policy(PolicyKind::NetworkPolicy))
        }
        ("NetworkPolicy", true, _) => Some(ObjectKind::Policy(PolicyKind::CalicoNetworkPolicy)),
        ("GlobalNetworkPolicy", true, _) => {
            Some(ObjectKind::Policy(PolicyKind::GlobalNetworkPolicy))
        }
        ("StagedNetworkPolicy", true, _) => {
            Some(ObjectKind::Policy(PolicyKind::StagedNetworkPolicy))
        }
        ("StagedGlobalNetworkPolicy", true, _) => {
            Some(ObjectKind::Policy(PolicyKind::StagedGlobalNetworkPolicy))
        }
        ("StagedKubernetesNetworkPolicy", true, _) => Some(ObjectKind::Policy(
            PolicyKind::StagedKubernetesNetworkPolicy,
        )),
        ("Tier", true, _) => Some(ObjectKind::Tier),
        ("NetworkSet", true, _) => Some(ObjectKind::NetworkSet { global: false }),
        ("GlobalNetworkSet", true, _) => Some(ObjectKind::NetworkSet { global: true }),
        ("AdminNetworkPolicy", _, "policy.networking.k8s.io") => {
            Some(ObjectKind::Policy(PolicyKind::AdminNetworkPolicy))
        }
        ("BaselineAdminNetworkPolicy", _, "policy.networking.k8s.io") => {
            Some(ObjectKind::Policy(PolicyKind::BaselineAdminNetworkPolicy))
        }
        ("ClusterNetworkPolicy", _, "policy.networking.k8s.io") => {
            Some(ObjectKind::Policy(PolicyKind::ClusterNetworkPolicy))
        }
        _ => None,
    }
}

fn load_object(obj: &Located<'_>, source: &str, out: &mut LoadResult) {
    let label = object_label(obj.value, &obj.locator);
    let invalid = |e: FieldError| LoadError::Invalid {
        file: source.to_string(),
        object: label.clone(),
        field: e.path,
        message: e.message,
    };
    let root_path = Path::root();
    let root = Node::new(obj.value, &root_path);
    if let Err(e) = root.object() {
        out.errors.push(invalid(e));
        return;
    }
    let kind = match root.opt_str("kind") {
        Ok(Some(k)) => k,
        Ok(None) => {
            out.errors
                .push(invalid(FieldError::new("kind", "kind is missing")));
            return;
        }
        Err(e) => {
            out.errors.push(invalid(e));
            return;
        }
    };
    let api_version = match root.opt_str("apiVersion") {
        Ok(v) => v.unwrap_or(""),
        Err(e) => {
            out.errors.push(invalid(e));
            return;
        }
    };
    let Some(class) = classify(api_version, kind) else {
        let why = if api_version.is_empty() && kind == "NetworkPolicy" {
            "apiVersion is missing, so it is unclear whether this is a Kubernetes or a Calico policy"
        } else {
            "not a supported policy kind"
        };
        out.warnings.push(format!(
            "{source}: skipped {label} (apiVersion {}): {why}",
            if api_version.is_empty() {
                "missing"
            } else {
                api_version
            }
        ));
        return;
    };
    match class {
        ObjectKind::Tier => match parse_tier(root) {
            Ok(t) => out.policies.tiers.push(t),
            Err(e) => out.errors.push(invalid(e)),
        },
        ObjectKind::NetworkSet { global } => match parse_network_set(root, global) {
            Ok(set) => out.policies.network_sets.push(set),
            Err(e) => out.errors.push(invalid(e)),
        },
        ObjectKind::Policy(kind) => match parse_policy(root, kind, source, &label, obj.value) {
            Ok(Parsed::Policy(p, warns)) => {
                out.warnings.extend(warns);
                out.policies.policies.push(*p);
            }
            Ok(Parsed::Skipped(why)) => out
                .warnings
                .push(format!("{source}: skipped {label}: {why}")),
            Err(e) => out.errors.push(invalid(e)),
        },
    }
}

fn metadata_name(root: Node<'_>) -> Result<(String, Option<String>), FieldError> {
    with_field(root, "metadata", |m| {
        let Some(m) = m else {
            return Err(FieldError::new("metadata", "metadata is missing"));
        };
        m.object()?;
        let name = match m.opt_str("name")? {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => return Err(FieldError::new("metadata.name", "name is missing")),
        };
        Ok((name, m.opt_str("namespace")?.map(str::to_string)))
    })
}

fn parse_network_set(root: Node<'_>, global: bool) -> Result<NetworkSet, FieldError> {
    let meta = crate::objects::parse_metadata(root.value)?;
    let nets = with_field(root, "spec", |spec| match spec {
        Some(spec) => Ok(with_list(spec, "nets", |_, c| parse_cidr(c))?.unwrap_or_default()),
        None => Ok(Vec::new()),
    })?;
    Ok(NetworkSet {
        // The API server defaults a namespaced object's namespace, as for pods.
        namespace: (!global).then_some(meta.namespace),
        name: meta.name,
        labels: meta.labels,
        nets,
    })
}

fn parse_tier(root: Node<'_>) -> Result<Tier, FieldError> {
    let (name, _) = metadata_name(root)?;
    with_field(root, "spec", |spec| {
        let Some(spec) = spec else {
            return Ok(Tier {
                name: name.clone(),
                order: None,
                default_action: TierDefaultAction::Deny,
            });
        };
        spec.object()?;
        let default_action = match spec.opt_str("defaultAction")? {
            None | Some("Deny") => TierDefaultAction::Deny,
            Some("Pass") => TierDefaultAction::Pass,
            Some(other) => {
                return Err(FieldError::new(
                    "spec.defaultAction",
                    format!("unknown defaultAction \"{other}\" (expected Deny or Pass)"),
                ))
            }
        };
        Ok(Tier {
            name: name.clone(),
            order: spec.opt_f64("order")?,
            default_action,
        })
    })
}

enum Parsed {
    Policy(Box<Policy>, Vec<String>),
    Skipped(String),
}

/// The parts of a policy object a reader needs, as YAML: what `kubectl apply` took, without the
/// server's additions (status, managed fields, annotations).
fn policy_text(object: &Value) -> std::sync::Arc<str> {
    let mut shown = serde_json::Map::new();
    for key in ["apiVersion", "kind"] {
        if let Some(value) = object.get(key) {
            shown.insert(key.to_owned(), value.clone());
        }
    }
    if let Some(metadata) = object.get("metadata") {
        let mut kept = serde_json::Map::new();
        for key in ["name", "namespace", "labels"] {
            if let Some(value) = metadata.get(key) {
                kept.insert(key.to_owned(), value.clone());
            }
        }
        shown.insert("metadata".to_owned(), Value::Object(kept));
    }
    if let Some(spec) = object.get("spec") {
        shown.insert("spec".to_owned(), spec.clone());
    }
    let text = serde_saphyr::to_string(&Value::Object(shown))
        .unwrap_or_else(|err| format!("# the policy could not be shown as YAML: {err}\n"));
    text.into()
}

fn parse_policy(
    root: Node<'_>,
    kind: PolicyKind,
    source: &str,
    label: &str,
    object: &Value,
) -> Result<Parsed, FieldError> {
    let text = policy_text(object);
    let (name, ns) = metadata_name(root)?;
    let global = kind.is_admin()
        || matches!(
            kind,
            PolicyKind::GlobalNetworkPolicy | PolicyKind::StagedGlobalNetworkPolicy
        );
    let mut warnings = Vec::new();
    let namespace = if global {
        None
    } else {
        Some(ns.unwrap_or_else(|| {
            warnings.push(format!(
                "{source}: {label} has no metadata.namespace; using \"default\""
            ));
            "default".to_string()
        }))
    };
    let origin = format!("{source}: {label}");
    let policy = with_field(root, "spec", |spec| {
        let Some(spec) = spec else {
            return Err(FieldError::new("spec", "spec is missing"));
        };
        match kind {
            PolicyKind::AdminNetworkPolicy
            | PolicyKind::BaselineAdminNetworkPolicy
            | PolicyKind::ClusterNetworkPolicy => {
                let admin_kind = match kind {
                    PolicyKind::AdminNetworkPolicy => AdminKind::Admin,
                    PolicyKind::BaselineAdminNetworkPolicy => {
                        // The API admits exactly one, by this name.
                        if name != "default" {
                            return Err(FieldError::new(
                                "metadata.name",
                                format!(
                                    "a BaselineAdminNetworkPolicy must be named \"default\" (found \"{name}\")"
                                ),
                            ));
                        }
                        AdminKind::Baseline
                    }
                    _ => AdminKind::Cluster,
                };
                let p = parse_admin_spec(spec, admin_kind)?;
                Ok(Some(Policy {
                    kind,
                    name: name.clone(),
                    namespace: None,
                    tier: p.tier.to_string(),
                    order: p.priority,
                    ingress: p.ingress,
                    egress: p.egress,
                    body: PolicyBody::Admin(p.spec),
                    staged_action: None,
                    origin: origin.clone(),
                    text: text.clone(),
                }))
            }
            PolicyKind::NetworkPolicy | PolicyKind::StagedKubernetesNetworkPolicy => {
                let staged = kind.is_staged();
                let p = parse_k8s_spec(spec)?;
                let staged_action = if staged {
                    // Reuse the Calico reader for the one extra field.
                    parse_calico_staged_action(spec)?
                } else {
                    None
                };
                Ok(Some(Policy {
                    kind,
                    name: name.clone(),
                    namespace: namespace.clone(),
                    tier: DEFAULT_TIER.to_string(),
                    order: Some(K8S_POLICY_ORDER),
                    ingress: p.ingress,
                    egress: p.egress,
                    body: PolicyBody::Kubernetes(p.spec),
                    staged_action,
                    origin: origin.clone(),
                    text: text.clone(),
                }))
            }
            _ => {
                let p = parse_calico_spec(spec, namespace.as_deref(), kind.is_staged())?;
                if p.host_only {
                    return Ok(None);
                }
                Ok(Some(Policy {
                    kind,
                    name: name.clone(),
                    namespace: namespace.clone(),
                    tier: p.tier,
                    order: p.order,
                    ingress: p.ingress,
                    egress: p.egress,
                    body: PolicyBody::Calico(p.spec),
                    staged_action: p.staged_action,
                    origin: origin.clone(),
                    text: text.clone(),
                }))
            }
        }
    })?;
    if let Some(Policy {
        body: PolicyBody::Admin(spec),
        ..
    }) = &policy
    {
        if spec.has_domain_names() {
            warnings.push(format!(
                "{source}: {label}: domainNames peers are not evaluated (flows carry addresses, \
                 not the names they were resolved from): those peers match nothing"
            ));
        }
    }
    Ok(match policy {
        Some(p) => Parsed::Policy(Box::new(p), warnings),
        None => Parsed::Skipped(
            "doNotTrack/preDNAT policies apply to host endpoints only; not evaluated".into(),
        ),
    })
}

fn parse_calico_staged_action(
    spec: Node<'_>,
) -> Result<Option<crate::model::StagedAction>, FieldError> {
    use crate::model::StagedAction;
    match spec.opt_str("stagedAction")? {
        None | Some("Set") => Ok(Some(StagedAction::Set)),
        Some("Delete") => Ok(Some(StagedAction::Delete)),
        Some(other) => Err(FieldError::new(
            "spec.stagedAction",
            format!("unknown stagedAction \"{other}\" (expected Set or Delete)"),
        )),
    }
}

/// The API leaves the order of two admin policies of one tier and priority undefined (an
/// implementation may apply either): flowd evaluates them by name, and says so.
fn warn_equal_priorities(out: &mut LoadResult) {
    let mut by_priority: std::collections::BTreeMap<(String, u64), Vec<String>> =
        std::collections::BTreeMap::new();
    for p in out.policies.policies.iter().filter(|p| p.kind.is_admin()) {
        if let Some(order) = p.order {
            by_priority
                .entry((p.tier.clone(), order as u64))
                .or_default()
                .push(format!("{} {}", p.kind, p.name));
        }
    }
    for ((tier, priority), mut names) in by_priority {
        if names.len() > 1 {
            names.sort();
            out.warnings.push(format!(
                "{} share priority {priority} in tier {tier}: the API leaves their order undefined; flowd evaluates them by name",
                names.join(", ")
            ));
        }
    }
}

/// Post-load checks across all files: duplicates (the last one wins, as a
/// later `kubectl apply` would) and tiers that no Tier object defines.
fn finish(out: &mut LoadResult) {
    let mut seen: HashMap<(PolicyKind, Option<String>, String), usize> = HashMap::new();
    let mut keep = vec![true; out.policies.policies.len()];
    for (i, p) in out.policies.policies.iter().enumerate() {
        let key = (p.kind, p.namespace.clone(), p.name.clone());
        if let Some(prev) = seen.insert(key, i) {
            keep[prev] = false;
            out.warnings.push(format!(
                "{} is defined more than once; using the one from {}",
                p.reference().qualified_name(),
                p.origin
            ));
        }
    }
    let mut idx = 0;
    out.policies.policies.retain(|_| {
        let k = keep[idx];
        idx += 1;
        k
    });
    let mut tier_seen: HashMap<String, usize> = HashMap::new();
    let mut tiers = Vec::new();
    for t in std::mem::take(&mut out.policies.tiers) {
        if let Some(&i) = tier_seen.get(&t.name) {
            out.warnings.push(format!(
                "Tier {} is defined more than once; using the last",
                t.name
            ));
            tiers[i] = t;
        } else {
            tier_seen.insert(t.name.clone(), tiers.len());
            tiers.push(t);
        }
    }
    out.policies.tiers = tiers;
    warn_equal_priorities(out);
    let mut missing: Vec<&str> = out
        .policies
        .policies
        .iter()
        .filter(|p| !p.kind.is_admin())
        .map(|p| p.tier.as_str())
        .filter(|t| *t != DEFAULT_TIER && !tier_seen.contains_key(*t))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    for t in missing {
        out.warnings.push(format!(
            "tier \"{t}\" is used by policies but no Tier object defines it; it is ordered last"
        ));
    }
}
