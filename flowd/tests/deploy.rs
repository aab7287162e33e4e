//! The settings shipped in deploy/ must be settings the agent accepts.

use std::path::{Path, PathBuf};

use flowd::config::{Config, ConfigFile};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(origin: &str, yaml: &str) {
    let file =
        ConfigFile::parse(Path::new(origin), yaml).unwrap_or_else(|err| panic!("{origin}: {err}"));
    file.apply(Config::default())
        .validate()
        .unwrap_or_else(|err| panic!("{origin}: {err}"));
}

#[test]
fn manifest_configmap_is_a_valid_agent_config() {
    let text = std::fs::read_to_string(repo().join("deploy/manifests/flowd.yaml")).unwrap();
    let mut found = false;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(document).unwrap();
        if value["kind"] == "ConfigMap" {
            let embedded = value["data"]["flowd.yaml"]
                .as_str()
                .expect("flowd.yaml key");
            check("deploy/manifests/flowd.yaml", embedded);
            found = true;
        }
    }
    assert!(found, "the manifests carry a flowd ConfigMap");
}

#[test]
fn helm_default_values_are_a_valid_agent_config() {
    let text = std::fs::read_to_string(repo().join("deploy/helm/flowd/values.yaml")).unwrap();
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let config = serde_yaml_ng::to_string(&values["config"]).unwrap();
    check("deploy/helm/flowd/values.yaml", &config);
}

/// (group, resource) pairs a ClusterRole in `yaml` grants both list and watch on. Helm's
/// `{{ ... }}` expressions are blanked first, so the chart's template parses as plain YAML.
fn listable(yaml: &str) -> Vec<(String, String)> {
    let mut plain = String::new();
    let mut rest = yaml;
    while let Some(start) = rest.find("{{") {
        plain.push_str(&rest[..start]);
        plain.push_str("templated");
        rest = rest[start..]
            .find("}}")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    plain.push_str(rest);
    let strings = |v: &serde_yaml_ng::Value| -> Vec<String> {
        v.as_sequence()
            .map(|s| {
                s.iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut granted = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&plain) {
        let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(document).unwrap();
        if value["kind"] != "ClusterRole" {
            continue;
        }
        for rule in value["rules"].as_sequence().into_iter().flatten() {
            let verbs = strings(&rule["verbs"]);
            if !(verbs.iter().any(|v| v == "list") && verbs.iter().any(|v| v == "watch")) {
                continue;
            }
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    granted.push((group.clone(), resource));
                }
            }
        }
    }
    granted
}

#[test]
fn the_cluster_role_lets_the_agent_watch_everything_it_watches() {
    for file in [
        "deploy/manifests/flowd.yaml",
        "deploy/helm/flowd/templates/rbac.yaml",
    ] {
        let granted = listable(&std::fs::read_to_string(repo().join(file)).unwrap());
        for (group, resource) in flowd::enrich::kubernetes::WATCHED_RESOURCES {
            assert!(
                granted.iter().any(|(g, r)| g == group && r == resource),
                "{file}: the ClusterRole must grant list and watch on {resource} in group {group:?}"
            );
        }
    }
}
