//! The `nightly` toolchain with `rust-src`: the kernel programs build with `-Z build-std=core`.

use std::process::Command;

use anyhow::Context as _;

use super::Step;

pub const STEP: Step = Step {
    name: "nightly toolchain with rust-src",
    present,
    install,
    fix: "run `rustup toolchain install nightly --component rust-src` and read its errors",
};

fn present() -> anyhow::Result<bool> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("rustup is needed to build the kernel programs with the nightly toolchain")?;
    Ok(installed.status.success()
        && String::from_utf8_lossy(&installed.stdout)
            .lines()
            .any(|l| l.starts_with("rust-src")))
}

fn install() -> anyhow::Result<()> {
    let has_nightly =
        super::succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]));
    if has_nightly {
        crate::run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))
    } else {
        crate::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))
    }
}
