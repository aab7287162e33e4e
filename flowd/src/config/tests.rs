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
