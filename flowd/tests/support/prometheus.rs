//! A real Prometheus server (Debian's package) scraping agents on loopback, and its HTTP API.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::http;

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
}

/// Query strings as the HTTP API takes them.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Prometheus {
    /// Starts Prometheus in `dir`, scraping `targets` every second and loading `rule_files`;
    /// returns once it says it is ready.
    pub fn start(dir: &Path, targets: &[String], rule_files: &[&Path]) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let rules: Vec<String> = rule_files
            .iter()
            .map(|r| format!("\"{}\"", r.display()))
            .collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: flowd\n    static_configs:\n      - targets: [{}]\n",
            rules.join(", "),
            targets.join(", ")
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (cargo xtask setup installs Debian's prometheus package)");
        let mut prometheus = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = prometheus.child.try_wait().expect("poll prometheus") {
                panic!("prometheus exited at start: {status}");
            }
            if std::net::TcpStream::connect(addr).is_ok()
                && http::request(addr, "GET", "/-/ready", None, "").status == 200
            {
                return prometheus;
            }
            assert!(Instant::now() < deadline, "prometheus not ready in 30s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET /api/v1/<path>?<query>=<value>`'s `data`, asserting the call succeeded.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let answer = http::request(
            self.addr,
            "GET",
            &format!("/api/v1/{path}?{}", query.join("&")),
            None,
            "",
        );
        let body = answer.json();
        assert_eq!(body["status"], "success", "{path} {params:?}: {body}");
        body["data"].clone()
    }

    /// An instant query's result vector.
    pub fn query(&self, expr: &str) -> Vec<Value> {
        self.api("query", &[("query", expr)])["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The summed value of `expr` once `done` accepts it, or the last value at the deadline.
    pub fn value_when(&self, expr: &str, timeout: Duration, done: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let value: f64 = self
                .query(expr)
                .iter()
                .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                .sum();
            if done(value) || Instant::now() >= deadline {
                return value;
            }
            // The next scrape is at most a second away.
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// [`Prometheus::value_when`], failing with `what` and the series of `family` (what was
    /// scraped) when `done` never accepts the value.
    pub fn expect_value(
        &self,
        expr: &str,
        done: impl Fn(f64) -> bool,
        what: &str,
        family: &str,
    ) -> f64 {
        let value = self.value_when(expr, Duration::from_secs(30), &done);
        assert!(
            done(value),
            "{what}: {expr} = {value}; {family}: {:?}",
            self.query(family)
        );
        value
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// deploy/monitoring: the alerting rules and the Grafana dashboard.
pub fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring")
}

pub const RULES: &str = "flowd-alerts.yaml";
pub const DASHBOARD: &str = "flowd-dashboard.json";

/// The dashboard's JSON, its panels that query (rows left out).
pub fn dashboard_panels() -> Vec<Value> {
    let text = std::fs::read_to_string(monitoring_dir().join(DASHBOARD)).expect("read dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .cloned()
        .collect()
}

/// Every PromQL expression of the dashboard.
pub fn dashboard_queries() -> Vec<String> {
    dashboard_panels()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("a target has an expr").to_owned())
        .collect()
}

/// The `flowd_*` metric names a text mentions.
pub fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("flowd_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}
