//! The chart, rendered by the real Helm engine with default and non-default values: lint, the
//! Kubernetes schemas, the agent's own settings check, RBAC, the values schema, the manifests.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::chart::{self, Rendered};
use super::support::run_flowd;

/// The value sets every check runs on: defaults and the switches users turn.
fn value_sets() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        (
            "TLS listener",
            json!({"listener": {"enabled": true, "tls": {"secretName": "flowd-tls"}}}),
        ),
        (
            "plaintext listener, said explicitly",
            json!({"listener": {"enabled": true, "insecure": true}}),
        ),
        (
            "policies ConfigMap",
            json!({"policiesConfigMap": "seed-policies"}),
        ),
        (
            "metrics and ServiceMonitor",
            json!({"metrics": {"enabled": true, "serviceMonitor": {"enabled": true}}}),
        ),
        ("privileged", json!({"privileged": true})),
        (
            "relay with TLS both ways",
            json!({"listener": {"enabled": true, "tls": {"secretName": "flowd-tls"}},
                   "relay": {"enabled": true, "tls": {"secretName": "flowd-relay-tls",
                             "agentServerName": "flowd-agents", "serverName": "flowd-relay"}}}),
        ),
        (
            "relay in plaintext, said explicitly on both sides",
            json!({"listener": {"enabled": true, "insecure": true},
                   "relay": {"enabled": true, "insecure": true}}),
        ),
        (
            "UI on the agents and the relay, with TLS",
            json!({"listener": {"enabled": true, "tls": {"secretName": "flowd-tls"}},
                   "ui": {"enabled": true},
                   "relay": {"enabled": true, "ui": {"enabled": true},
                             "tls": {"secretName": "flowd-relay-tls",
                             "agentServerName": "flowd-agents", "serverName": "flowd-relay"}}}),
        ),
        (
            "UI in plaintext, said explicitly",
            json!({"listener": {"enabled": true, "insecure": true}, "ui": {"enabled": true},
                   "relay": {"enabled": true, "insecure": true, "ui": {"enabled": true}}}),
        ),
        (
            "exporters with their files from a Secret",
            json!({"exporters": {"secretName": "flowd-exporters"},
                   "config": {"otlpEndpoint": "http://otel-collector.observability:4317",
                              "kafkaBrokers": ["kafka-0.kafka:9093"],
                              "kafkaTlsCa": "/etc/flowd/exporters/ca.crt",
                              "kafkaSaslMechanism": "scram-sha-512",
                              "kafkaSaslUsername": "flowd",
                              "kafkaSaslPasswordFile": "/etc/flowd/exporters/password",
                              "kafkaAllow": [{"verdict": ["VERDICT_DENIED", "VERDICT_DROPPED"]}]}}),
        ),
        (
            "no BTF or tracefs mounts",
            json!({"hostMounts": {"btf": false, "tracefs": false}, "config": {"dropProbe": "off"}}),
        ),
    ]
}

fn rendered(name: &str, values: &Value) -> Rendered {
    chart::render(values).unwrap_or_else(|err| panic!("{name}: the chart does not render: {err}"))
}

#[test]
fn the_chart_lints_clean_in_strict_mode() {
    for (name, values) in value_sets() {
        let findings = chart::lint(&values);
        assert!(
            findings.is_empty(),
            "{name}: helm lint --strict: {findings:#?}"
        );
    }
}

#[test]
fn every_rendered_object_is_valid_for_kubernetes() {
    for (name, values) in value_sets() {
        let rendered = rendered(name, &values);
        for problem in chart::validate(&rendered) {
            // The Prometheus Operator's CRD is the one kind kubernetes-validate has no schema
            // for; its fields are checked below.
            let object = problem["object"].as_str().unwrap_or_default();
            assert!(
                problem["missing_schema"] == true && object.starts_with("ServiceMonitor/"),
                "{name}: {problem}"
            );
        }
        if rendered.has("ServiceMonitor") {
            let monitor = rendered.object("ServiceMonitor");
            assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics", "{name}");
            let service = rendered
                .object_named("Service", "flowd-agents")
                .expect("the agents' Service");
            let ports = service["spec"]["ports"].as_sequence().expect("ports");
            assert!(ports.iter().any(|p| p["name"] == "metrics"), "{name}");
            assert_eq!(
                monitor["spec"]["selector"]["matchLabels"],
                service["metadata"]["labels"]
                    .as_mapping()
                    .map(|labels| {
                        let mut selector = labels.clone();
                        selector.retain(|k, _| service["spec"]["selector"].get(k).is_some());
                        serde_yaml_ng::Value::Mapping(selector)
                    })
                    .unwrap_or_default(),
                "{name}: the ServiceMonitor selects the agents' Service by its labels"
            );
        }
    }
}

#[test]
fn every_rendered_agent_config_passes_the_agents_own_check() {
    let dir = tempfile::tempdir().unwrap();
    for (index, (name, values)) in value_sets().into_iter().enumerate() {
        let file = dir.path().join(format!("flowd-{index}.yaml"));
        std::fs::write(&file, rendered(name, &values).agent_settings()).unwrap();
        let (code, output) = run_flowd(&["run", "--check-config", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: flowd run --check-config: {output}");
        assert!(output.contains("valid flowd settings"), "{name}: {output}");
    }
}

#[test]
fn check_config_names_the_file_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("flowMapEntries: lots\n", "flowMapEntries"),
        ("sweepInterval: 10s\nactiveTimeout: 5s\n", "activeTimeout"),
        ("listen: 0.0.0.0:4245\n", "tlsClientCa"),
        ("tcAttach: sometimes\n", "tcAttach"),
        ("intervals: [eth0]\n", "intervals"),
    ];
    for (index, (text, named)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("bad-{index}.yaml"));
        std::fs::write(&file, text).unwrap();
        let path = file.to_str().unwrap();
        let (code, output) = run_flowd(&["run", "--check-config", path]);
        assert_eq!(code, 2, "{text:?}: {output}");
        assert!(
            output.contains(path) && output.contains(named),
            "{text:?}: the error names the file and {named}: {output}"
        );
    }
    let (code, output) = run_flowd(&["run", "--check-config", "/nonexistent/flowd.yaml"]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("/nonexistent/flowd.yaml"), "{output}");
}

/// The relay's command line as the Deployment gives it: flags the relay knows (clap refuses an
/// unknown one before it reaches --help) and the agents' Service it follows.
#[test]
fn the_relay_deployment_runs_a_command_the_relay_accepts() {
    let rendered = rendered(
        "relay",
        &json!({"listener": {"enabled": true, "tls": {"secretName": "flowd-tls"}},
                "relay": {"enabled": true, "ui": {"enabled": true},
                          "tls": {"secretName": "r", "agentServerName": "a",
                          "serverName": "b"}}}),
    );
    let relay = rendered
        .objects()
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a relay Deployment");
    let container = &relay["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string").to_owned())
        .collect();
    let service = args
        .iter()
        .position(|a| a == "--kubernetes-service")
        .map(|i| args[i + 1].clone());
    assert_eq!(service.as_deref(), Some("flowd/flowd-agents"), "{args:?}");
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--ui-listen" && w[1] == "0.0.0.0:4248"),
        "the relay serves the cluster's UI: {args:?}"
    );
    let agents = rendered
        .object_named("Service", "flowd-agents")
        .expect("the Service the relay follows is rendered");
    assert_eq!(
        agents["spec"]["clusterIP"], "None",
        "headless: one endpoint per agent"
    );
    let ports = agents["spec"]["ports"].as_sequence().expect("ports");
    assert!(
        ports.iter().any(|p| p["name"] == "grpc"),
        "the port the relay looks for"
    );
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let (code, output) = run_flowd(&with_help);
    assert_eq!(code, 0, "flowd {with_help:?}: {output}");
    let role = rendered
        .objects()
        .into_iter()
        .find(|o| o["kind"] == "Role")
        .expect("the relay's Role");
    assert_eq!(role["rules"][0]["resources"][0], "endpointslices");
    assert_eq!(
        role["rules"].as_sequence().map(Vec::len),
        Some(1),
        "nothing else"
    );
}

#[test]
fn the_settings_follow_the_values() {
    let tls = rendered(
        "TLS",
        &json!({"listener": {"enabled": true, "port": 4300, "tls": {"secretName": "flowd-tls"}}}),
    );
    let settings: serde_yaml_ng::Value = serde_yaml_ng::from_str(&tls.agent_settings()).unwrap();
    assert_eq!(settings["listen"], "0.0.0.0:4300");
    assert_eq!(settings["tlsClientCa"], "/etc/flowd/tls/ca.crt");
    assert!(settings.get("insecureListen").is_none());
    let pod = &tls.object("DaemonSet")["spec"]["template"]["spec"];
    let secret_volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("a TLS volume");
    assert_eq!(secret_volume["secret"]["secretName"], "flowd-tls");

    let ui = rendered(
        "UI",
        &json!({"listener": {"enabled": true, "tls": {"secretName": "flowd-tls"}},
                "ui": {"enabled": true, "port": 4400}}),
    );
    let settings: serde_yaml_ng::Value = serde_yaml_ng::from_str(&ui.agent_settings()).unwrap();
    assert_eq!(settings["uiListen"], "0.0.0.0:4400");
    assert!(
        settings.get("insecureUi").is_none(),
        "the UI gets the listener's TLS"
    );
    let ports = &ui.object("Service")["spec"]["ports"];
    assert!(
        ports
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "ui" && p["port"] == 4400),
        "{ports:?}"
    );

    let defaults = rendered("defaults", &json!({}));
    let settings: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&defaults.agent_settings()).unwrap();
    for absent in [
        "listen",
        "uiListen",
        "metricsListen",
        "insecureListen",
        "insecureMetrics",
    ] {
        assert!(settings.get(absent).is_none(), "defaults set {absent}");
    }
    assert!(
        defaults.object("Service")["spec"]["ports"].is_null(),
        "nothing listens by default"
    );
    let container = defaults.agent_container();
    let security = &container["securityContext"];
    assert_eq!(security["privileged"], false);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(chart::chart_dir().join("values.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(security["capabilities"]["add"], values["capabilities"]);
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let command = &container[probe]["exec"]["command"];
        assert_eq!(command[0], "flowd", "{probe} asks the agent");
        assert_eq!(command[1], "health", "{probe} asks the agent");
    }

    let exporters = rendered(
        "exporters",
        &json!({"exporters": {"secretName": "flowd-exporters"},
                "config": {"kafkaBrokers": ["kafka-0:9092"], "kafkaTopic": "flows"}}),
    );
    let settings: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&exporters.agent_settings()).unwrap();
    assert_eq!(settings["kafkaBrokers"][0], "kafka-0:9092");
    assert_eq!(settings["kafkaTopic"], "flows");
    let pod = &exporters.object("DaemonSet")["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "exporters")
        .expect("the exporters' Secret volume");
    assert_eq!(volume["secret"]["secretName"], "flowd-exporters");
    assert!(exporters.agent_container()["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "exporters" && m["mountPath"] == "/etc/flowd/exporters"));

    let privileged = rendered("privileged", &json!({"privileged": true})).agent_container();
    assert_eq!(privileged["securityContext"]["privileged"], true);
    assert!(privileged["securityContext"]["capabilities"].is_null());
}

#[test]
fn the_cluster_role_grants_only_reading_what_the_agent_watches() {
    let role = rendered("defaults", &json!({})).object("ClusterRole");
    let mut granted = BTreeSet::new();
    let strings = |v: &serde_yaml_ng::Value| -> Vec<String> {
        v.as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    for rule in role["rules"].as_sequence().expect("rules") {
        for verb in strings(&rule["verbs"]) {
            assert!(
                ["get", "list", "watch"].contains(&verb.as_str()),
                "the agent only reads; the ClusterRole grants {verb}"
            );
        }
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                assert!(
                    strings(&rule["verbs"]).iter().any(|v| v == "list")
                        && strings(&rule["verbs"]).iter().any(|v| v == "watch"),
                    "{group}/{resource}: a watcher needs list and watch"
                );
                granted.insert((group.clone(), resource));
            }
        }
    }
    let watched: BTreeSet<(String, String)> = flowd::enrich::kubernetes::WATCHED_RESOURCES
        .iter()
        .map(|(g, r)| ((*g).to_owned(), (*r).to_owned()))
        .collect();
    assert_eq!(
        granted, watched,
        "the ClusterRole grants exactly what the agent watches"
    );
}

#[test]
fn wrong_values_are_refused_with_a_readable_message() {
    let cases = [
        (json!({"listenPort": 4245}), "listenPort"),
        (json!({"config": {"tcAttach": "sometimes"}}), "tcAttach"),
        (
            json!({"config": {"flowMapEntries": "lots"}}),
            "flowMapEntries",
        ),
        (json!({"config": {"listen": "0.0.0.0:4245"}}), "listen"),
        (json!({"listener": {"port": 70000}}), "port"),
        (json!({"privileged": "yes"}), "privileged"),
        (json!({"capabilities": ["net_admin"]}), "capabilities"),
        // Refusals of two values together, from the templates.
        (
            json!({"listener": {"enabled": true}}),
            "listener.tls.secretName",
        ),
        (
            json!({"metrics": {"serviceMonitor": {"enabled": true}}}),
            "metrics.enabled",
        ),
        (json!({"relay": {"enabled": true}}), "listener.enabled"),
        (
            json!({"ui": {"enabled": true}}),
            "ui.enabled needs listener.enabled",
        ),
        (
            json!({"listener": {"enabled": true, "insecure": true},
                   "ui": {"enabled": true, "port": 4245}}),
            "ui.port",
        ),
        (
            json!({"listener": {"enabled": true, "insecure": true}, "relay": {"enabled": true}}),
            "relay.tls.secretName",
        ),
        (
            json!({"listener": {"enabled": true, "tls": {"secretName": "t"}},
                   "relay": {"enabled": true, "insecure": true}}),
            "listener.insecure",
        ),
    ];
    for (values, named) in cases {
        match chart::render(&values) {
            Ok(_) => panic!("{values} rendered"),
            Err(err) => assert!(
                err.contains(named),
                "{values}: the refusal names {named}: {err}"
            ),
        }
    }
}

/// Settings the chart derives from `listener`, `ui`, `metrics` and `policiesConfigMap`.
const CHART_OWNED: &[&str] = &[
    "listen",
    "uiListen",
    "insecureUi",
    "tlsCert",
    "tlsKey",
    "tlsClientCa",
    "metricsListen",
    "insecureListen",
    "insecureMetrics",
    "policyFiles",
];

#[test]
fn the_values_schema_knows_every_agent_setting() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart::chart_dir().join("values.schema.json")).unwrap(),
    )
    .unwrap();
    let in_schema: BTreeSet<String> = schema["properties"]["config"]["properties"]
        .as_object()
        .expect("config properties")
        .keys()
        .cloned()
        .collect();
    let settings: BTreeSet<String> = flowd::config::SETTINGS
        .iter()
        .map(|s| flowd::config::table::file_key(s.field))
        .filter(|key| !CHART_OWNED.contains(&key.as_str()))
        .collect();
    assert_eq!(
        in_schema, settings,
        "values.schema.json's config keys must be the agent's settings minus the chart's own"
    );
}

#[test]
fn notes_tell_how_to_see_flows() {
    let notes = rendered("defaults", &json!({})).notes().to_owned();
    assert!(notes.contains("flowd dump"), "{notes}");
    let tls = rendered(
        "TLS",
        &json!({"listener": {"enabled": true, "tls": {"secretName": "flowd-tls"}},
                "metrics": {"enabled": true}}),
    )
    .notes()
    .to_owned();
    assert!(tls.contains("grpcurl") && tls.contains("/metrics"), "{tls}");
    let plaintext = rendered(
        "plaintext",
        &json!({"listener": {"enabled": true, "insecure": true}}),
    )
    .notes()
    .to_owned();
    assert!(plaintext.contains("WARNING"), "{plaintext}");
}

#[test]
fn checked_in_manifests_are_a_fresh_render() {
    let fresh = rendered("defaults", &json!({})).as_manifest_file();
    let path = chart::repo().join("deploy/manifests/flowd.yaml");
    if std::env::var("FLOWD_WRITE_MANIFESTS").as_deref() == Ok("1") {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap();
    assert!(
        checked_in == fresh,
        "deploy/manifests/flowd.yaml differs from a fresh render of the chart; regenerate with \
         FLOWD_WRITE_MANIFESTS=1 cargo test -p flowd --test deploy manifests"
    );
}
