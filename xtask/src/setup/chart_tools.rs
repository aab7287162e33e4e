//! The real Helm engine and the Kubernetes schemas for the chart tests: PyPI's helm-python-sdk
//! (Helm's Go SDK as a library, so no helm binary or Go toolchain) and kubernetes-validate.

use std::process::Command;

use super::Step;

/// Pinned: the releases the chart tests were written against (Helm 4's engine; schemas through
/// Kubernetes 1.37).
const PACKAGES: &[&str] = &["helm-python-sdk==0.2.2", "kubernetes-validate==1.37.0"];

/// Both import, at the pinned versions, in the python3 the tests start.
const CHECK: &str = "import importlib.metadata as m, helm_python, kubernetes_validate; \
    assert m.version('helm-python-sdk') == '0.2.2', m.version('helm-python-sdk'); \
    assert m.version('kubernetes-validate') == '1.37.0', m.version('kubernetes-validate'); \
    helm_python.Chart";

pub const STEP: Step = Step {
    name: "Helm engine and Kubernetes schemas (PyPI helm-python-sdk, kubernetes-validate)",
    present: || Ok(super::succeeds(Command::new("python3").args(["-c", CHECK]))),
    install: || {
        crate::run(
            Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(PACKAGES),
        )
    },
    fix: "run `python3 -m pip install helm-python-sdk==0.2.2 kubernetes-validate==1.37.0` with \
          the python3 on PATH and read its errors",
};

/// Installs both into a scratch directory and imports them from there: the machine running the
/// tests may already have them, and a green run must not hide a broken install path.
pub fn prove_fresh_install() -> anyhow::Result<()> {
    use anyhow::Context as _;
    let scratch = crate::workspace_root()?.join("target/xtask-chart-tools-proof");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot clear {}", scratch.display()))?;
    }
    println!(
        "xtask: proving the chart tools' install path into {}",
        scratch.display()
    );
    crate::run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--ignore-installed",
                "--target",
            ])
            .arg(&scratch)
            .args(PACKAGES),
    )?;
    let imported = super::succeeds(
        Command::new("python3")
            .args(["-s", "-c", CHECK])
            .env("PYTHONPATH", &scratch),
    );
    std::fs::remove_dir_all(&scratch)
        .with_context(|| format!("cannot remove {}", scratch.display()))?;
    if !imported {
        anyhow::bail!(
            "a fresh install of {} does not import; {}",
            PACKAGES.join(" "),
            STEP.fix
        );
    }
    println!("xtask: a fresh install of the chart tools imports");
    Ok(())
}
