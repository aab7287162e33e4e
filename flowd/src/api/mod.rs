//! The gRPC front end (flowd.v1): a thin adapter over the store and telemetry.

pub mod client;
mod request;
mod server;

/// The generated API types, also reachable here for clients of the library.
pub use crate::proto;
pub use server::{serve, ApiError, FlowApi, Listeners, TlsFiles};
