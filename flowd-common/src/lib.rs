//! Types shared by flowd's kernel programs and its agent.
//!
//! Everything here is `#[repr(C)]` with explicit padding: these structs are BPF map keys and
//! values, so any implicit padding byte would be hashed as garbage and split one flow in two.
#![cfg_attr(not(test), no_std)]

pub mod flow;
pub mod key;
#[cfg(any(test, feature = "packets"))]
pub mod packets;
pub mod parse;
pub mod zeroed;

pub use flow::*;
pub use key::{connection_key, connection_key_into};
pub use parse::{
    parse_network_into, parse_packet, parse_packet_into, parse_quoted_into, unreachable_error,
    PacketInfo, PacketSource, ParseError,
};
pub use zeroed::Zeroable;
