//! deploy/monitoring: the alerting rules as Prometheus's own `promtool` reads and unit-tests
//! them, and the Grafana dashboard's shape. That every metric they name is one the agent serves,
//! and that every dashboard query parses, a real Prometheus checks in `seed.rs`.

use std::{collections::BTreeSet, process::Command};

use serde_json::Value;

use crate::support::prometheus::{
    dashboard_panels, metric_names, monitoring_dir, DASHBOARD, RULES,
};

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(monitoring_dir())
        .output()
        .expect("run promtool (cargo xtask setup installs Debian's prometheus package)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alerting_rules_load_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", RULES]);
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "flowd-alerts.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn the_dashboard_is_grafana_json_with_every_panel_placed_and_queried() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(monitoring_dir().join(DASHBOARD)).unwrap())
            .unwrap();
    assert_eq!(dashboard["uid"], "flowd-overview");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "instance"]);
    let panels = dashboard_panels();
    for wanted in [
        "Denials by policy",
        "Kernel drops by reason",
        "Top talkers by namespace",
        "Agent CPU per node",
    ] {
        assert!(
            panels.iter().any(|p| p["title"] == wanted),
            "no panel {wanted}"
        );
    }
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for panel in &panels {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "ids are unique");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        let grid = &panel["gridPos"];
        let (x, y, w, h) = (
            grid["x"].as_u64().unwrap(),
            grid["y"].as_u64().unwrap(),
            grid["w"].as_u64().unwrap(),
            grid["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{} is wider than the grid", panel["title"]);
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "{} overlaps another panel",
                    panel["title"]
                );
            }
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} queries nothing", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains("$instance"), "{expr} ignores the node picker");
            assert!(
                !metric_names(expr).is_empty(),
                "{expr} reads no flowd metric"
            );
        }
    }
}
