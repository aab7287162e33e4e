//! Project tasks: `cargo xtask setup | test | demo`. Only std, anyhow and clap, so it builds on a
//! machine that cannot build the agent yet (that is what `setup` fixes).

mod bench;
mod fuzz;
mod setup;
mod test;

use std::process::Command;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "flowd project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need and is missing (Debian packages, nightly rust-src,
    /// bpf-linker with LLVM 22, grpcurl). Skips what is present; checks what it installed.
    Setup(setup::SetupArgs),
    /// Setup, then formatting, clippy and every test. As root the privileged tests must run:
    /// any skip fails the run.
    Test(test::TestArgs),
    /// Setup, build, then `flowd demo`: two namespaces, real capture, generated traffic, and
    /// the seed story on the web UI (arguments after `--` go to `flowd demo`, e.g. `--ui-for 0s`).
    Demo {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup, then each fuzz target (`fuzz/`) for a while.
    Fuzz(fuzz::FuzzArgs),
    /// Setup, then a real agent for N minutes under traffic, churn, coming and going followers
    /// and a SIGKILL half way (as root): memory and CPU over time, and records lost.
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
    },
    /// Setup (with iperf3, pmacctd and softflowd), then the benchmarks (as root for the kernel,
    /// agent and end-to-end ones); writes BENCHMARKS.md.
    Bench,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup(args) => setup::run(args),
        Task::Test(args) => {
            setup::run(setup::SetupArgs::default())?;
            test::run(args)
        }
        Task::Fuzz(args) => {
            setup::run(setup::SetupArgs::default())?;
            fuzz::run(&args)
        }
        Task::Soak { minutes } => {
            setup::run(setup::SetupArgs::default())?;
            cargo(&["build", "--release", "--package", "flowd"])?;
            let flowd = workspace_root()?.join("target/release/flowd");
            let minutes = minutes.to_string();
            cargo(&[
                "run",
                "--release",
                "--package",
                "flowd",
                "--features",
                "testing",
                "--example",
                "soak",
                "--",
                "--minutes",
                &minutes,
                "--flowd",
                flowd.to_str().context("non UTF-8 path")?,
            ])
        }
        Task::Bench => {
            setup::run(setup::SetupArgs {
                bench: true,
                ..setup::SetupArgs::default()
            })?;
            bench::run()
        }
        Task::Demo { args } => {
            setup::run_for_demo()?;
            cargo(&["build", "--package", "flowd"])?;
            let flowd = workspace_root()?.join("target/debug/flowd");
            run(Command::new(flowd).arg("demo").args(args))
        }
    }
}

pub fn workspace_root() -> anyhow::Result<std::path::PathBuf> {
    let manifest = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(|p| p.to_owned())
        .context("xtask lives inside the workspace")
}

pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_with_env(args, &[])
}

pub fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    run(cargo_command(args)?.envs(env.iter().copied()))
}

/// The cargo that runs xtask, in the workspace, with LLVM 22 and bpf-linker first on PATH.
pub fn cargo_command(args: &[&str]) -> anyhow::Result<Command> {
    let mut command = Command::new(cargo_program());
    command
        .args(args)
        .current_dir(workspace_root()?)
        .env("PATH", setup::current_tool_path());
    Ok(command)
}

/// The cargo that runs xtask (`CARGO`), else the one on PATH.
pub fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
