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
