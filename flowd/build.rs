//! Builds the kernel programs (flowd-ebpf, for bpfel-unknown-none with the nightly toolchain) and
//! the gRPC API from proto/, so a plain `cargo build` produces a complete agent.
use std::{env, path::PathBuf};

use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    build_kernel_programs()?;
    build_api()
}

fn build_kernel_programs() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../flowd-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non UTF-8 path {}", ebpf_dir.display()))?;
    let common_dir = manifest_dir.join("../flowd-common/src");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "flowd-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the kernel programs failed; run `cargo xtask setup` to install bpf-linker, \
         LLVM 22 and the nightly rust-src component",
    )
}

fn build_api() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../proto");
    let protos = [proto_root.join("flowd/v1/flow.proto")];
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    let descriptors = protox::compile(&protos, [&proto_root]).context("compiling proto/")?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("flowd_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(descriptors.clone())
        .context("generating gRPC code")?;

    pbjson_build::Builder::new()
        .register_descriptors(&prost::Message::encode_to_vec(&descriptors))?
        .build(&[".flowd.v1"])
        .context("generating proto3 JSON mapping")?;
    Ok(())
}
