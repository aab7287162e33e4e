//! Debian packages, in two sets: what the build needs and what the tests add.

use std::process::Command;

use anyhow::bail;

use super::Step;

/// LLVM 22 matches the nightly rustc's LLVM; bpf-linker links libLLVM dynamically, so the
/// package must stay installed after bpf-linker is built.
const BUILD_PACKAGES: &[&str] = &["llvm-22-dev", "libpolly-22-dev"];
/// iproute2 for namespaces and veths, nftables for drop tests, ping for the demo, openssl for
/// the TLS test certificates.
const TEST_PACKAGES: &[&str] = &["iproute2", "nftables", "iputils-ping", "openssl"];

pub const BUILD: Step = Step {
    name: "Debian packages for the build (llvm-22-dev libpolly-22-dev)",
    present: || Ok(missing(BUILD_PACKAGES).is_empty()),
    install: || install(BUILD_PACKAGES),
    fix: "run `apt-get install -y llvm-22-dev libpolly-22-dev` as root and read its errors",
};

/// What `cargo xtask bench`'s end-to-end section runs: iperf3 for the loads, the two libpcap
/// collectors flowd is compared with, and bpftool for reading program statistics by hand.
const BENCH_PACKAGES: &[&str] = &["iperf3", "pmacct", "softflowd", "bpftool"];

/// Installed is not enough: each tool the benchmark starts must start.
const BENCH_TOOLS: &[(&str, &str)] = &[
    ("iperf3", "--version"),
    ("pmacctd", "-V"),
    ("softflowd", "-h"),
    ("taskset", "--version"),
];

pub const BENCH: Step = Step {
    name: "Debian packages for the benchmarks (iperf3 pmacct softflowd bpftool)",
    present: || {
        Ok(missing(BENCH_PACKAGES).is_empty()
            && BENCH_TOOLS
                .iter()
                .all(|(tool, flag)| super::succeeds(Command::new(tool).arg(flag))))
    },
    install: || install(BENCH_PACKAGES),
    fix:
        "run `apt-get install -y iperf3 pmacct softflowd bpftool` as root, check that `pmacctd -V` \
          and `softflowd -h` run, and read their errors",
};

/// The UI tests drive Debian's Chromium headless; installed is not enough, it must render.
const BROWSER_PACKAGES: &[&str] = &["chromium"];

pub const BROWSER: Step = Step {
    name: "Chromium for the UI tests (Debian chromium)",
    present: || Ok(missing(BROWSER_PACKAGES).is_empty() && chromium_renders()),
    install: || install(BROWSER_PACKAGES),
    fix: "run `apt-get install -y chromium` as root, then `chromium --headless --no-sandbox \
          --dump-dom 'data:text/html,<p>flowd</p>'` and read its errors",
};

/// A page rendered by headless Chromium, checked by its serialised DOM.
fn chromium_renders() -> bool {
    let profile = std::env::temp_dir().join(format!("flowd-setup-chromium-{}", std::process::id()));
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            "data:text/html,<p id=flowd>rendered</p>",
        ])
        .output();
    let _ = std::fs::remove_dir_all(&profile);
    matches!(output, Ok(o) if o.status.success()
        && String::from_utf8_lossy(&o.stdout).contains("<p id=\"flowd\">rendered</p>"))
}

/// The metrics test has a real Prometheus scrape the agent and `promtool` check the alerting
/// rules; installed is not enough, both must start.
const PROMETHEUS_PACKAGES: &[&str] = &["prometheus"];

pub const PROMETHEUS: Step = Step {
    name: "Prometheus for the metrics tests (Debian prometheus: prometheus, promtool)",
    present: || {
        Ok(missing(PROMETHEUS_PACKAGES).is_empty()
            && super::succeeds(Command::new("prometheus").arg("--version"))
            && super::succeeds(Command::new("promtool").arg("--version")))
    },
    install: || {
        install(PROMETHEUS_PACKAGES)?;
        stop_packaged_prometheus();
        Ok(())
    },
    fix: "run `apt-get install -y prometheus` as root, check that `prometheus --version` and \
          `promtool --version` run, and read their errors",
};

/// The package enables a service listening on every address (:9090) where an init system runs
/// it; the tests start their own on loopback, so the packaged one is stopped and disabled.
fn stop_packaged_prometheus() {
    if super::succeeds(Command::new("systemctl").args(["is-enabled", "prometheus"])) {
        let _ = crate::run(Command::new("systemctl").args(["disable", "--now", "prometheus"]));
    }
}

pub const TEST: Step = Step {
    name: "Debian packages for the tests (iproute2 nftables iputils-ping openssl)",
    present: || Ok(missing(TEST_PACKAGES).is_empty()),
    install: || install(TEST_PACKAGES),
    fix: "run `apt-get install -y iproute2 nftables iputils-ping openssl` as root and read its errors",
};

fn missing(packages: &[&'static str]) -> Vec<&'static str> {
    packages
        .iter()
        .copied()
        .filter(|pkg| {
            let output = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", pkg])
                .output();
            !matches!(output, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn install(packages: &[&'static str]) -> anyhow::Result<()> {
    let missing = missing(packages);
    if !super::is_root() {
        bail!(
            "setup: missing Debian packages {list}; install them as root: apt-get install -y {list}",
            list = missing.join(" ")
        );
    }
    crate::run(Command::new("apt-get").arg("update").arg("-qq"))?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
