//! The fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer on the nightly toolchain): a short run of
//! each in `cargo xtask test`, longer ones with `cargo xtask fuzz`.

use std::process::Command;

use anyhow::{bail, Context as _};
use clap::Args;

#[derive(Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u32,
    /// Only these targets (default: all of them).
    pub targets: Vec<String>,
}

/// Seconds per target in the test command: enough to run every seed and mutate well past them.
pub const TEST_SECONDS: u32 = 10;

pub fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root()?;
    let fuzz_dir = root.join("fuzz");
    let targets = if args.targets.is_empty() {
        list(&fuzz_dir)?
    } else {
        args.targets.clone()
    };
    build(&fuzz_dir, &targets)?;
    for target in &targets {
        println!("xtask: fuzzing {target} for {} s", args.seconds);
        // The first corpus directory takes what libFuzzer finds (ignored by git); the checked-in
        // seeds are read only.
        let found = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&found)?;
        let status = Command::new("cargo")
            .current_dir(&fuzz_dir)
            .env("PATH", crate::setup::current_tool_path())
            .args([
                "+nightly",
                "fuzz",
                "run",
                "--fuzz-dir",
                ".",
                "--dev",
                target,
            ])
            .arg(&found)
            .arg(fuzz_dir.join("seeds").join(target))
            .args([
                "--",
                &format!("-max_total_time={}", args.seconds),
                "-timeout=10",
                "-rss_limit_mb=2048",
            ])
            .status()
            .context("cannot start `cargo fuzz`; `cargo xtask setup` installs it")?;
        if !status.success() {
            bail!(
                "fuzz target {target} failed: the input is in fuzz/artifacts/{target}/. Fix the \
                 cause, then add the input to fuzz/seeds/{target}/ as a regression (the unit \
                 tests run every seed)"
            );
        }
    }
    Ok(())
}

/// Builds every target before any runs, so that a build failure reads as one and not as a
/// finding (`cargo fuzz run` reports both the same way).
fn build(fuzz_dir: &std::path::Path, targets: &[String]) -> anyhow::Result<()> {
    for target in targets {
        let status = Command::new("cargo")
            .current_dir(fuzz_dir)
            .env("PATH", crate::setup::current_tool_path())
            .args([
                "+nightly",
                "fuzz",
                "build",
                "--fuzz-dir",
                ".",
                "--dev",
                target,
            ])
            .status()
            .context("cannot start `cargo fuzz`; `cargo xtask setup` installs it")?;
        if !status.success() {
            bail!(
                "building fuzz target {target} failed (the compiler's output is above). A linker \
                 killed by SIGBUS or signal 7 means the disk filled up: see `df -h {}`",
                fuzz_dir.display()
            );
        }
    }
    Ok(())
}

fn list(fuzz_dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let output = Command::new("cargo")
        .current_dir(fuzz_dir)
        .env("PATH", crate::setup::current_tool_path())
        .args(["+nightly", "fuzz", "list", "--fuzz-dir", "."])
        .output()
        .context("cannot start `cargo fuzz list`")?;
    if !output.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let targets: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if targets.is_empty() {
        bail!("no fuzz targets in {}", fuzz_dir.display());
    }
    Ok(targets)
}
