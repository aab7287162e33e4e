use clap::Args;

#[derive(Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check`, clippy and the fresh bpf-linker, cargo-fuzz and PyPI installs
    /// (quicker local runs; CI never passes it).
    #[arg(long)]
    quick: bool,
}

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    if !args.quick {
        crate::setup::prove_bpf_linker_install()?;
        crate::setup::prove_cargo_fuzz_install()?;
        crate::setup::CHART_TOOLS.prove_fresh_install()?;
        crate::setup::RECEIVERS.prove_fresh_install()?;
        crate::cargo(&["fmt", "--all", "--", "--check"])?;
        crate::cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?;
    }
    // Privileged tests read this: as root, a test that cannot run fails instead of skipping.
    let require = if crate::setup::is_root() {
        "1"
    } else {
        println!("xtask: not root: privileged tests will skip (CI runs them as root)");
        "0"
    };
    crate::cargo_with_env(
        &["test", "--workspace", "--", "--test-threads", "2"],
        &[("FLOWD_REQUIRE_PRIVILEGED", require)],
    )?;
    crate::fuzz::run(&crate::fuzz::FuzzArgs {
        seconds: crate::fuzz::TEST_SECONDS,
        targets: Vec::new(),
    })
}
