//! bpf-linker, built against LLVM 22 whatever else the machine has, and the proof that a fresh
//! install works (run by `cargo xtask test`, so CI exercises the install path on every run).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use super::{
    tools::{self, LLVM_PREFIX},
    Step,
};

/// Pinned: the release known to build with this machine's rustc and link LLVM 22.
const CRATE: &str = "bpf-linker@0.13.0";
/// The LLVM 22 shared library the binary must load (it links libLLVM dynamically).
const LIBLLVM: &str = "libLLVM.so.22";
/// LLVM 14's llvm-config that the image ships: the one a wrong PATH picks up.
const IMAGE_LLVM_CONFIG_DIR: &str = "/usr/bin";

pub const STEP: Step = Step {
    name: "bpf-linker (LLVM 22)",
    present: || Ok(on_path().is_some_and(|bin| check(&bin).is_ok())),
    install: || {
        install(None, &std::env::var("PATH").unwrap_or_default())?;
        let bin = tools::cargo_bin_dir()
            .map(|dir| dir.join("bpf-linker"))
            .context(
                "setup: neither CARGO_HOME nor HOME is set, so cargo's bin directory is unknown",
            )?;
        check(&bin)
    },
    fix: "put cargo's bin directory (~/.cargo/bin) on PATH",
};

/// `cargo install` with the environment that makes bpf-linker's build script find LLVM 22:
/// `LLVM_PREFIX` named explicitly and LLVM 22 first on PATH, whatever `base_path` holds.
fn install(root: Option<&Path>, base_path: &str) -> anyhow::Result<()> {
    let mut command = Command::new(crate::cargo_program());
    command
        .args(["install", "--locked", CRATE])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("PATH", tools::tool_path(base_path));
    if let Some(root) = root {
        command.arg("--root").arg(root);
    }
    crate::run(&mut command).context(
        "setup: building bpf-linker failed; it needs llvm-22-dev and libpolly-22-dev installed \
         (apt-get install -y llvm-22-dev libpolly-22-dev)",
    )
}

/// The binary starts and loads LLVM 22's library (one built against another LLVM starts too,
/// then fails to link the kernel programs).
fn check(bin: &Path) -> anyhow::Result<()> {
    let version = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("setup: cannot start {}", bin.display()))?;
    if !version.status.success() {
        bail!(
            "setup: {} --version failed ({}): {}; reinstall it with `cargo xtask setup` after \
             `rm {}`",
            bin.display(),
            version.status,
            String::from_utf8_lossy(&version.stderr).trim(),
            bin.display()
        );
    }
    let libraries = Command::new("ldd")
        .arg(bin)
        .output()
        .context("setup: ldd is needed to check which LLVM bpf-linker loads")?;
    let libraries = String::from_utf8_lossy(&libraries.stdout);
    if !libraries.contains(LIBLLVM) {
        bail!(
            "setup: {} does not load {LIBLLVM} (it was built against another LLVM); remove it \
             (`rm {}`) and run `cargo xtask setup` again",
            bin.display(),
            bin.display()
        );
    }
    Ok(())
}

fn on_path() -> Option<PathBuf> {
    tools::current_tool_path()
        .split(':')
        .map(|dir| Path::new(dir).join("bpf-linker"))
        .find(|candidate| candidate.is_file())
}

/// Installs bpf-linker the way setup does into a scratch root, from a PATH on which the image's
/// LLVM 14 `llvm-config` comes first (the order that broke the first fresh install), and checks
/// the result. About 80 s on two cores: it is the only way to know that a fresh machine's
/// install works, because the machine running it may already have a working bpf-linker.
pub fn prove_fresh_install() -> anyhow::Result<()> {
    let scratch = crate::workspace_root()?.join("target/xtask-install-proof");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot clear {}", scratch.display()))?;
    }
    let hostile_path = format!(
        "{IMAGE_LLVM_CONFIG_DIR}:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    println!(
        "xtask: proving the bpf-linker install path into {} (about 80 s)",
        scratch.display()
    );
    install(Some(&scratch), &hostile_path)?;
    check(&scratch.join("bin/bpf-linker"))?;
    std::fs::remove_dir_all(&scratch)
        .with_context(|| format!("cannot remove {}", scratch.display()))?;
    println!("xtask: a fresh bpf-linker install builds, starts and loads {LIBLLVM}");
    Ok(())
}
