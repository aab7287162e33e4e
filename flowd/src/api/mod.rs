//! The gRPC front end (flowd.v1): a thin adapter over the store and telemetry.

mod authority;
pub mod client;
mod request;
mod server;
mod unix_conn;

/// The generated API types, also reachable here for clients of the library.
pub use crate::proto;
pub use server::{serve, ApiError, FlowApi, Listeners, TlsFiles, DEFAULT_MAX_SUBSCRIBERS};
