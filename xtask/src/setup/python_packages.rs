//! Pinned PyPI packages the tests use, each set installed into the python3 on PATH and checked
//! by importing it:
//! - the real Helm engine and the Kubernetes schemas for the chart tests: helm-python-sdk
//!   (Helm's Go SDK as a library, so no helm binary or Go toolchain) and kubernetes-validate;
//! - the receivers of the exporter tests, built from upstream's own code: an OTLP receiver from
//!   the official protobuf definitions (opentelemetry-proto with grpcio), and kafka-python as
//!   the Kafka consumer.

use std::process::Command;

use super::Step;

/// A pinned set of packages and the Python that proves they import at those versions.
pub struct Packages {
    pub name: &'static str,
    pub packages: &'static [&'static str],
    pub check: &'static str,
}

/// Pinned: the releases the chart tests were written against (Helm 4's engine; schemas through
/// Kubernetes 1.37).
pub const CHART_TOOLS: Packages = Packages {
    name: "Helm engine and Kubernetes schemas (PyPI helm-python-sdk, kubernetes-validate)",
    packages: &["helm-python-sdk==0.2.2", "kubernetes-validate==1.37.0"],
    check: "import importlib.metadata as m, helm_python, kubernetes_validate; \
        assert m.version('helm-python-sdk') == '0.2.2', m.version('helm-python-sdk'); \
        assert m.version('kubernetes-validate') == '1.37.0', m.version('kubernetes-validate'); \
        helm_python.Chart",
};

/// The other ends of the exporter tests: the OTLP receiver
/// (`flowd/tests/receivers/otlp_receiver.py`) and the Kafka consumer (kafka-python).
pub const RECEIVERS: Packages = Packages {
    name: "OTLP receiver and Kafka consumer (PyPI opentelemetry-proto, grpcio, kafka-python)",
    packages: &[
        "opentelemetry-proto==1.45.2",
        "grpcio==1.85.3",
        "kafka-python==3.0.12",
    ],
    check: "import importlib.metadata as m, grpc, kafka; \
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc; \
        assert m.version('opentelemetry-proto') == '1.45.2', m.version('opentelemetry-proto'); \
        assert m.version('grpcio') == '1.85.3', m.version('grpcio'); \
        assert m.version('kafka-python') == '3.0.12', m.version('kafka-python'); \
        logs_service_pb2_grpc.LogsServiceServicer, kafka.KafkaConsumer",
};

fn pip_install(packages: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages);
    command
}

pub const CHART_TOOLS_STEP: Step = Step {
    name: CHART_TOOLS.name,
    present: || CHART_TOOLS.present(),
    install: || CHART_TOOLS.install(),
    fix: "run `python3 -m pip install helm-python-sdk==0.2.2 kubernetes-validate==1.37.0` with \
          the python3 on PATH and read its errors",
};

pub const RECEIVERS_STEP: Step = Step {
    name: RECEIVERS.name,
    present: || RECEIVERS.present(),
    install: || RECEIVERS.install(),
    fix: "run `python3 -m pip install opentelemetry-proto==1.45.2 grpcio==1.85.3 \
          kafka-python==3.0.12` with the python3 on PATH and read its errors",
};

impl Packages {
    fn install(&self) -> anyhow::Result<()> {
        crate::run(&mut pip_install(self.packages))
    }

    fn present(&self) -> anyhow::Result<bool> {
        Ok(super::succeeds(
            Command::new("python3").args(["-c", self.check]),
        ))
    }

    /// Installs the set into a scratch directory and imports it from there: the machine
    /// running the tests may already have it, and a green run must not hide a broken install
    /// path.
    pub fn prove_fresh_install(&self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let scratch = crate::workspace_root()?.join("target/xtask-python-packages-proof");
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)
                .with_context(|| format!("cannot clear {}", scratch.display()))?;
        }
        println!(
            "xtask: proving the install path of {} into {}",
            self.name,
            scratch.display()
        );
        crate::run(
            pip_install(self.packages)
                .args(["--ignore-installed", "--target"])
                .arg(&scratch),
        )?;
        let imported = super::succeeds(
            Command::new("python3")
                .args(["-s", "-c", self.check])
                .env("PYTHONPATH", &scratch),
        );
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot remove {}", scratch.display()))?;
        if !imported {
            anyhow::bail!(
                "a fresh install of {} does not import; run `python3 -m pip install {}` and read \
                 its errors",
                self.packages.join(" "),
                self.packages.join(" ")
            );
        }
        println!("xtask: a fresh install of {} imports", self.name);
        Ok(())
    }
}
