//! cargo-fuzz, which builds and runs the libFuzzer targets in `fuzz/` on the nightly toolchain,
//! and the proof that a fresh install works (run by `cargo xtask test`, as for bpf-linker).

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _};

use super::{tools, Step};

/// Pinned: the release known to build here and to drive this nightly's sanitizers.
const CRATE: &str = "cargo-fuzz@0.13.2";

pub const STEP: Step = Step {
    name: "cargo-fuzz",
    present: || {
        // The rustup proxy, not $CARGO (one toolchain's cargo, which knows no `+nightly`).
        Ok(super::succeeds(
            Command::new("cargo")
                .env("PATH", tools::current_tool_path())
                .args(["+nightly", "fuzz", "--version"]),
        ))
    },
    install: || install(None),
    fix: "put cargo's bin directory (~/.cargo/bin) on PATH; the fuzz targets also need the \
          nightly toolchain (`rustup toolchain install nightly`)",
};

fn install(root: Option<&Path>) -> anyhow::Result<()> {
    let mut command = Command::new(crate::cargo_program());
    command
        .args(["install", "--locked", CRATE])
        .env("PATH", tools::current_tool_path());
    if let Some(root) = root {
        command.arg("--root").arg(root);
    }
    crate::run(&mut command).context("setup: building cargo-fuzz failed")
}

/// Installs cargo-fuzz into a scratch root and starts it: the machine running the tests may
/// already have one, and a green run must not hide a broken install path. About 2 minutes.
pub fn prove_fresh_install() -> anyhow::Result<()> {
    let scratch = crate::workspace_root()?.join("target/xtask-cargo-fuzz-proof");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot clear {}", scratch.display()))?;
    }
    println!(
        "xtask: proving the cargo-fuzz install path into {} (about 2 minutes)",
        scratch.display()
    );
    install(Some(&scratch))?;
    let bin = scratch.join("bin/cargo-fuzz");
    let version = Command::new(&bin)
        .args(["fuzz", "--version"])
        .output()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    if !version.status.success() || !String::from_utf8_lossy(&version.stdout).contains("cargo-fuzz")
    {
        bail!(
            "a fresh cargo-fuzz install does not start: {}",
            String::from_utf8_lossy(&version.stderr).trim()
        );
    }
    std::fs::remove_dir_all(&scratch)
        .with_context(|| format!("cannot remove {}", scratch.display()))?;
    println!("xtask: a fresh cargo-fuzz install builds and starts");
    Ok(())
}
