//! Code generated from proto/flowd/v1 (prost messages, tonic service, proto3 JSON mapping).
#![allow(clippy::all, missing_docs, unreachable_pub)]

pub mod v1 {
    tonic::include_proto!("flowd.v1");
    include!(concat!(env!("OUT_DIR"), "/flowd.v1.serde.rs"));
}

/// Encoded descriptors of every API file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flowd_descriptor.bin"));
