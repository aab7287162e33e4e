//! Fresh-machine setup. Every step checks whether it is needed, does it, then checks again and
//! fails naming the fix when its own result is not there: a setup that "succeeded" without the
//! tool in place is how the README's first command once broke on a fresh machine.

mod bpf_linker;
mod cargo_fuzz;
mod debian;
mod kafka_broker;
mod python_packages;
mod rust_src;
mod tools;

use std::process::{Command, Stdio};

use anyhow::bail;
use clap::Args;

pub use bpf_linker::prove_fresh_install as prove_bpf_linker_install;
pub use cargo_fuzz::prove_fresh_install as prove_cargo_fuzz_install;
pub use python_packages::{CHART_TOOLS, RECEIVERS};
pub use tools::current_tool_path;

#[derive(Args, Clone, Copy, Default)]
pub struct SetupArgs {
    /// Only what building the agent needs (LLVM 22, nightly rust-src, bpf-linker): the Docker
    /// build stage uses this; tests also need iproute2, nftables, ping, openssl and grpcurl.
    #[arg(long, conflicts_with = "bench")]
    pub build_only: bool,
    /// Also what `cargo xtask bench` needs: iperf3, pmacctd, softflowd, bpftool.
    #[arg(long)]
    pub bench: bool,
}

/// One install step: `present` is asked before and after `install`.
struct Step {
    name: &'static str,
    present: fn() -> anyhow::Result<bool>,
    install: fn() -> anyhow::Result<()>,
    /// What a user can do when the step installed but its result is still absent.
    fix: &'static str,
}

fn ensure(step: &Step) -> anyhow::Result<()> {
    if (step.present)()? {
        println!("setup: {} present", step.name);
        return Ok(());
    }
    println!("setup: installing {}", step.name);
    (step.install)()?;
    if !(step.present)()? {
        bail!(
            "setup: installed {} but it is still not usable; {}",
            step.name,
            step.fix
        );
    }
    println!("setup: {} installed and checked", step.name);
    Ok(())
}

/// What the demo needs: the build, and the tools its namespaces use (not the test-only
/// receivers, the browser, or the 25-minute broker build).
pub fn run_for_demo() -> anyhow::Result<()> {
    for step in &[
        debian::BUILD,
        rust_src::STEP,
        bpf_linker::STEP,
        debian::TEST,
    ] {
        ensure(step)?;
    }
    Ok(())
}

pub fn run(args: SetupArgs) -> anyhow::Result<()> {
    let build = [debian::BUILD, rust_src::STEP, bpf_linker::STEP];
    for step in &build {
        ensure(step)?;
    }
    if !args.build_only {
        for step in &[
            debian::TEST,
            debian::BROWSER,
            debian::PROMETHEUS,
            tools::GRPCURL,
            python_packages::CHART_TOOLS_STEP,
            python_packages::RECEIVERS_STEP,
            kafka_broker::STEP,
            cargo_fuzz::STEP,
        ] {
            ensure(step)?;
        }
    }
    if args.bench {
        ensure(&debian::BENCH)?;
    }
    Ok(())
}

pub fn is_root() -> bool {
    effective_uid() == Some(0)
}

fn effective_uid() -> Option<u32> {
    let output = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// True when the command starts and exits 0; its output is not wanted.
fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    /// The image builds through setup, not through a copy of its steps that could drift.
    #[test]
    fn dockerfile_installs_through_setup() {
        let dockerfile =
            std::fs::read_to_string(crate::workspace_root().unwrap().join("deploy/Dockerfile"))
                .unwrap();
        let instructions: Vec<&str> = dockerfile
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        assert!(instructions
            .iter()
            .any(|l| l.contains("cargo xtask setup --build-only")));
        for own_step in ["apt-get", "cargo install", "rustup", "apt.llvm.org"] {
            assert!(
                !instructions.iter().any(|l| l.contains(own_step)),
                "deploy/Dockerfile runs `{own_step}` itself"
            );
        }
    }

    #[test]
    fn llvm_22_comes_first_whatever_the_path() {
        let path = super::tools::tool_path("/usr/bin:/usr/lib/llvm-22/bin:/bin");
        let entries: Vec<&str> = path.split(':').collect();
        assert_eq!(entries[0], "/usr/lib/llvm-22/bin");
        assert_eq!(
            entries
                .iter()
                .filter(|e| **e == "/usr/lib/llvm-22/bin")
                .count(),
            1
        );
        assert!(entries.contains(&"/usr/bin") && entries.contains(&"/bin"));
    }
}
