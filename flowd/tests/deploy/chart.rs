//! The chart as the real Helm engine renders it (through `helm.py`), and the rendered objects.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{json, Value};

/// The Kubernetes version the objects are validated against: the newest the schemas know.
pub const KUBERNETES: &str = "1.37.0";
/// Release and namespace of the checked-in manifests.
pub const RELEASE: &str = "flowd";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn chart_dir() -> PathBuf {
    repo().join("deploy/helm/flowd")
}

/// Sends one request to helm.py and returns its answer.
fn ask(request: Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deploy/helm.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3 (setup installs it)");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(request.to_string().as_bytes())
        .expect("send the request");
    let output = child.wait_with_output().expect("helm.py finishes");
    assert!(
        output.status.success(),
        "helm.py failed; `cargo xtask setup` installs helm-python-sdk and kubernetes-validate:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("helm.py answers JSON")
}

/// `helm lint --strict` findings of any severity (info included), as text.
pub fn lint(values: &Value) -> Vec<String> {
    let report = ask(json!({"command": "lint", "chart": chart_dir(), "values": values}));
    let mut findings: Vec<String> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e.to_string())
        .collect();
    for message in report["messages"].as_array().into_iter().flatten() {
        findings.push(format!(
            "severity {} {}: {}",
            message["severity"], message["path"], message["error"]
        ));
    }
    findings
}

/// The templates rendered for an install with `values`, or the engine's refusal.
pub fn render(values: &Value) -> Result<Rendered, String> {
    let answer = ask(json!({
        "command": "render",
        "chart": chart_dir(),
        "values": values,
        "name": RELEASE,
        "namespace": RELEASE,
    }));
    if let Some(error) = answer["error"].as_str() {
        return Err(error.to_owned());
    }
    let manifests: BTreeMap<String, String> =
        serde_json::from_value(answer["manifests"].clone()).expect("template path -> text");
    Ok(Rendered { manifests })
}

/// What kubernetes-validate (strict) says about the rendered objects: per object, its kind/name
/// and either `error` or `missing_schema`.
pub fn validate(rendered: &Rendered) -> Vec<Value> {
    let answer = ask(json!({
        "command": "validate",
        "kubernetes": KUBERNETES,
        "documents": rendered.object_texts(),
    }));
    answer["problems"].as_array().cloned().unwrap_or_default()
}

pub struct Rendered {
    manifests: BTreeMap<String, String>,
}

impl Rendered {
    /// The text of every template that renders objects (NOTES.txt and helpers excluded).
    fn object_texts(&self) -> Vec<&str> {
        self.manifests
            .iter()
            .filter(|(path, _)| path.ends_with(".yaml"))
            .map(|(_, text)| text.as_str())
            .collect()
    }

    pub fn notes(&self) -> &str {
        self.manifests
            .iter()
            .find(|(path, _)| path.ends_with("NOTES.txt"))
            .map(|(_, text)| text.as_str())
            .unwrap_or_default()
    }

    /// Every rendered object, parsed.
    pub fn objects(&self) -> Vec<serde_yaml_ng::Value> {
        let mut objects = Vec::new();
        for text in self.object_texts() {
            for document in serde_yaml_ng::Deserializer::from_str(text) {
                let value: serde_yaml_ng::Value =
                    serde::Deserialize::deserialize(document).expect("rendered YAML parses");
                if !value.is_null() {
                    objects.push(value);
                }
            }
        }
        objects
    }

    pub fn object(&self, kind: &str) -> serde_yaml_ng::Value {
        self.objects()
            .into_iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("the chart renders a {kind}"))
    }

    pub fn object_named(&self, kind: &str, name: &str) -> Option<serde_yaml_ng::Value> {
        self.objects()
            .into_iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    pub fn has(&self, kind: &str) -> bool {
        self.objects().iter().any(|o| o["kind"] == kind)
    }

    /// The agent's settings file as the ConfigMap carries it.
    pub fn agent_settings(&self) -> String {
        self.object("ConfigMap")["data"]["flowd.yaml"]
            .as_str()
            .expect("the ConfigMap carries flowd.yaml")
            .to_owned()
    }

    /// The agent container of the DaemonSet.
    pub fn agent_container(&self) -> serde_yaml_ng::Value {
        self.object("DaemonSet")["spec"]["template"]["spec"]["containers"][0].clone()
    }

    /// The objects as one multi-document file, in the order `helm install` applies them.
    pub fn as_manifest_file(&self) -> String {
        let mut documents: Vec<(usize, String)> = Vec::new();
        for text in self.object_texts() {
            for document in text.split("\n---") {
                let document = document.trim_start_matches("---").trim();
                if document.is_empty() {
                    continue;
                }
                let kind = document
                    .lines()
                    .find_map(|l| l.strip_prefix("kind: "))
                    .unwrap_or_default();
                documents.push((install_rank(kind), document.to_owned()));
            }
        }
        documents.sort_by_key(|(rank, _)| *rank);
        let mut file = String::from(
            "# deploy/helm/flowd rendered with its default values (release and namespace \"flowd\"),\n\
             # for clusters without Helm: kubectl create namespace flowd && kubectl apply -f flowd.yaml\n\
             # Generated; a test keeps it equal to a fresh render. Regenerate with\n\
             # FLOWD_WRITE_MANIFESTS=1 cargo test -p flowd --test deploy manifests\n",
        );
        for (_, document) in documents {
            file.push_str("---\n");
            file.push_str(&document);
            file.push('\n');
        }
        file
    }
}

/// Helm's install order for the kinds the chart renders (stable for equal ranks).
fn install_rank(kind: &str) -> usize {
    const ORDER: &[&str] = &[
        "ServiceAccount",
        "ConfigMap",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "DaemonSet",
        "ServiceMonitor",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}
