use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
    ConfigFile::parse(Path::new("flowd.yaml"), text)
}

#[test]
fn file_values_replace_defaults() {
    let file = parse(
        "interfaces: [eth0, eth1]\nactiveTimeout: 2s\nidleTimeout: 1m\nflowMapEntries: 1024\nlisten: 127.0.0.1:4245\n",
    )
    .unwrap();
    let config = file.apply(Config::default());
    assert_eq!(config.interfaces, vec!["eth0", "eth1"]);
    assert_eq!(config.active_timeout, Duration::from_secs(2));
    assert_eq!(config.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.flow_map_entries, 1024);
    assert_eq!(config.listen, Some("127.0.0.1:4245".parse().unwrap()));
    assert_eq!(config.socket, PathBuf::from(DEFAULT_SOCKET));
    config.validate().unwrap();
}

#[test]
fn empty_file_means_defaults() {
    let config = parse("# nothing set\n\n").unwrap().apply(Config::default());
    assert_eq!(config, Config::default());
}

#[test]
fn unknown_key_is_named() {
    let err = parse("activeTimout: 5s\n").unwrap_err().to_string();
    assert!(err.contains("flowd.yaml"), "{err}");
    assert!(err.contains("activeTimout"), "{err}");
    assert!(
        err.contains("activeTimeout"),
        "suggests the valid keys: {err}"
    );
}

#[test]
fn wrong_type_names_key_and_expectation() {
    let err = parse("flowMapEntries: lots\n").unwrap_err().to_string();
    assert!(err.contains("key `flowMapEntries`"), "{err}");
    assert!(err.contains("u32") || err.contains("integer"), "{err}");
    let err = parse("activeTimeout: soon\n").unwrap_err().to_string();
    assert!(err.contains("activeTimeout"), "{err}");
    let err = parse("interfaces: eth0\n").unwrap_err().to_string();
    assert!(err.contains("interfaces"), "{err}");
}

#[test]
fn syntax_error_is_reported_not_panicked() {
    let err = parse("interfaces: [eth0\n").unwrap_err();
    assert!(err.to_string().contains("flowd.yaml"), "{err}");
}

#[test]
fn validation_names_the_setting() {
    let config = Config {
        ring_buffer_bytes: 5000,
        ..Config::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("ringBufferBytes") && err.contains("power of two"),
        "{err}"
    );

    let config = Config {
        active_timeout: Duration::from_secs(1),
        sweep_interval: Duration::from_secs(2),
        ..Config::default()
    };
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("sweepInterval"));

    let config = Config {
        idle_timeout: Duration::ZERO,
        ..Config::default()
    };
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("idleTimeout"));

    let config = Config {
        interfaces: vec!["a-name-that-is-far-too-long".into()],
        ..Config::default()
    };
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("interfaces"));
}

#[test]
fn bare_netns_name_resolves_under_run_netns() {
    let config = Config {
        netns: Some("blue".into()),
        ..Config::default()
    };
    assert_eq!(config.netns_path(), Some(PathBuf::from("/run/netns/blue")));
    let config = Config {
        netns: Some("/proc/1/ns/net".into()),
        ..Config::default()
    };
    assert_eq!(config.netns_path(), Some(PathBuf::from("/proc/1/ns/net")));
}

#[test]
fn tc_attach_is_chosen_by_name() {
    let config = parse("tcAttach: clsact\n")
        .unwrap()
        .apply(Config::default());
    assert_eq!(config.tc_attach, crate::capture::TcAttach::Clsact);
    let err = parse("tcAttach: ebpf\n").unwrap_err().to_string();
    assert!(err.contains("tcAttach"), "{err}");
    assert!(
        err.contains("auto") && err.contains("tcx") && err.contains("clsact"),
        "names the choices: {err}"
    );
}

#[test]
fn drop_probe_is_chosen_by_name() {
    let config = parse("dropProbe: tracepoint\n")
        .unwrap()
        .apply(Config::default());
    assert_eq!(config.drop_probe, crate::capture::DropProbeMode::Tracepoint);
    assert_eq!(
        Config::default().drop_probe,
        crate::capture::DropProbeMode::Auto
    );
    let err = parse("dropProbe: kprobe\n").unwrap_err().to_string();
    assert!(
        err.contains("dropProbe") && err.contains("btf") && err.contains("off"),
        "names the key and the choices: {err}"
    );
}

#[test]
fn readme_settings_table_is_the_declared_one() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md next to the workspace");
    let generated = table::markdown_table();
    assert!(
        readme.contains(&generated),
        "README.md's settings table differs from the declarations in config/settings.rs; \
         replace it with:\n{generated}"
    );
}

#[test]
fn every_declared_setting_has_its_file_key() {
    for setting in SETTINGS {
        let key = table::file_key(setting.field);
        parse(&format!("{key}: null\n")).unwrap_or_else(|err| panic!("{key}: {err}"));
    }
}

#[derive(Debug, clap::Parser)]
struct Flags {
    #[command(flatten)]
    settings: SettingFlags,
}

fn flags(args: &[&str]) -> ConfigFile {
    use clap::Parser as _;
    let all = std::iter::once("flowd").chain(args.iter().copied());
    Flags::try_parse_from(all).unwrap().settings.as_layer()
}

#[test]
fn flags_win_over_the_file_and_absent_flags_keep_it() {
    let file =
        parse("activeTimeout: 2s\ninterfaces: [eth0]\nkubernetes: true\nlisten: 127.0.0.1:1\n")
            .unwrap()
            .apply(Config::default());
    let config = flags(&["--active-timeout", "4s", "--pipeline-buffer", "7"]).apply(file.clone());
    assert_eq!(config.active_timeout, Duration::from_secs(4));
    assert_eq!(config.pipeline_buffer, 7);
    assert_eq!(
        config.interfaces,
        vec!["eth0"],
        "no --interface keeps the file's list"
    );
    assert!(
        config.kubernetes,
        "an absent switch does not turn the file's setting off"
    );
    assert_eq!(config.listen, file.listen);
    let config = flags(&["-i", "veth0", "-i", "veth1", "--metadata-file", "/m"]).apply(file);
    assert_eq!(config.interfaces, vec!["veth0", "veth1"]);
    assert_eq!(config.metadata_files, vec![PathBuf::from("/m")]);
}

#[test]
fn no_flags_change_nothing() {
    assert_eq!(flags(&[]).apply(Config::default()), Config::default());
}

#[test]
fn a_certificate_without_its_key_is_refused() {
    let config = Config {
        tls_cert: Some("/cert.pem".into()),
        ..Config::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("tlsCert") && err.contains("tlsKey"), "{err}");
    let config = Config {
        tls_key: Some("/key.pem".into()),
        ..Config::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("tlsKey") && err.contains("tlsCert"), "{err}");
    let config = Config {
        tls_client_ca: Some("/ca.pem".into()),
        ..Config::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("tlsClientCa") && err.contains("tlsCert"),
        "{err}"
    );
}

#[test]
fn nothing_listens_beyond_loopback_without_tls_and_client_certificates() {
    let open = Config {
        listen: Some("0.0.0.0:4245".parse().unwrap()),
        ..Config::default()
    };
    let err = open.validate().unwrap_err().to_string();
    assert!(
        err.contains("listen") && err.contains("tlsClientCa") && err.contains("insecureListen"),
        "{err}"
    );
    let tls_only = Config {
        tls_cert: Some("/cert.pem".into()),
        tls_key: Some("/key.pem".into()),
        ..open.clone()
    };
    assert!(
        tls_only.validate().is_err(),
        "TLS without client certificates lets anyone read"
    );
    let mutual = Config {
        tls_client_ca: Some("/ca.pem".into()),
        ..tls_only
    };
    mutual.validate().unwrap();
    let loopback = Config {
        listen: Some("127.0.0.1:4245".parse().unwrap()),
        metrics_listen: Some("[::1]:9810".parse().unwrap()),
        ..Config::default()
    };
    loopback.validate().unwrap();
    let metrics = Config {
        metrics_listen: Some("0.0.0.0:9810".parse().unwrap()),
        ..Config::default()
    };
    let err = metrics.validate().unwrap_err().to_string();
    assert!(err.contains("metricsListen"), "{err}");
    Config {
        insecure_listen: true,
        ..open.clone()
    }
    .validate()
    .unwrap();
    let err = Config {
        insecure_listen: true,
        ..metrics.clone()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("insecureMetrics"),
        "the API's plaintext switch does not open the metrics: {err}"
    );
    Config {
        insecure_metrics: true,
        ..metrics
    }
    .validate()
    .unwrap();
    let err = Config {
        insecure_metrics: true,
        ..open
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("insecureListen"),
        "the metrics' switch does not open the API: {err}"
    );
}

#[test]
fn exporter_settings_read_from_the_file() {
    let file = parse(
        "otlpEndpoint: http://127.0.0.1:4317\nkafkaBrokers: [kafka-0:9092, kafka-1:9092]\n\
         kafkaFormat: json\nkafkaAllow:\n  - verdict: [VERDICT_DENIED]\n    namespace: [payments]\n\
         otlpDeny:\n  - port: [53]\n",
    )
    .unwrap();
    let config = file.apply(Config::default());
    assert_eq!(config.kafka_brokers, vec!["kafka-0:9092", "kafka-1:9092"]);
    assert_eq!(config.kafka_topic, "flowd.flows");
    assert_eq!(config.kafka_format, crate::export::KafkaFormat::Json);
    assert_eq!(
        config.kafka_allow[0].0.verdict,
        vec![crate::proto::v1::Verdict::Denied as i32]
    );
    assert_eq!(config.kafka_allow[0].0.namespace, vec!["payments"]);
    assert_eq!(config.otlp_deny[0].0.port, vec![53]);
    config.validate().unwrap();
}

#[test]
fn flow_metric_settings_read_from_file_and_flags_and_labels_need_their_metric_on() {
    use crate::flow_metrics::{ContextLabel, FlowMetric};
    let file = parse(
        "flowMetrics: [flows, denials]\nflowMetricLabels: [\"denials=source_namespace\"]\n\
         flowMetricMaxSeries: 50\n",
    )
    .unwrap()
    .apply(Config::default());
    assert_eq!(file.flow_metrics, [FlowMetric::Flows, FlowMetric::Denials]);
    assert_eq!(
        file.flow_metric_labels[0].labels,
        [ContextLabel::SourceNamespace]
    );
    assert_eq!(file.flow_metric_max_series, 50);
    file.validate().unwrap();
    let config = flags(&[
        "--flow-metric",
        "bytes",
        "--flow-metric-labels",
        "bytes=destination_workload,destination_namespace",
    ])
    .apply(Config::default());
    assert_eq!(config.flow_metrics, [FlowMetric::Bytes]);
    config.validate().unwrap();

    let off = parse("flowMetrics: []\n").unwrap().apply(Config::default());
    assert!(off.flow_metrics.is_empty(), "an empty list turns them off");
    let err = parse("flowMetrics: [flows]\nflowMetricLabels: [\"bytes=source_workload\"]\n")
        .unwrap()
        .apply(Config::default())
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("flowMetricLabels") && err.contains("bytes"),
        "{err}"
    );
    let err = parse("flowMetricLabels: [\"bytes=pod\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("is no label"), "{err}");
}
