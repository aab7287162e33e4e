//! A real Kafka-protocol broker for the Kafka exporter's tests: crates.io's `tansu`, an Apache
//! Kafka compatible broker in Rust. Its default features carry no storage engine; `dynostore`
//! (in memory) and `libsql` (durable, sqlite) are built in. The build takes about 25 minutes on
//! two cores, so setup builds it once and afterwards only checks that the installed binary runs
//! at the pinned version; the fresh-install proof `cargo xtask test` makes for the quicker
//! tools is not made for it (it would take a third of CI's time).

use std::process::Command;

use anyhow::Context as _;

use super::{tools, Step};

const VERSION: &str = "0.6.0";

pub const STEP: Step = Step {
    name: "Kafka-protocol broker (crates.io tansu 0.6.0 with dynostore and libsql; about 25 \
           minutes, once)",
    present: || {
        let Ok(output) = Command::new("tansu").arg("--version").output() else {
            return Ok(false);
        };
        Ok(output.status.success() && String::from_utf8_lossy(&output.stdout).contains(VERSION))
    },
    install: || {
        crate::run(
            Command::new(crate::cargo_program())
                .args(["install", "--locked", "tansu", "--version", VERSION])
                .args(["--features", "dynostore,libsql"])
                .env("PATH", tools::current_tool_path()),
        )
        .context("setup: building tansu failed")
    },
    fix: "put cargo's bin directory (~/.cargo/bin) on PATH, then run `tansu --version`",
};
