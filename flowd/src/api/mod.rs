//! The gRPC front end (flowd.v1): a thin adapter over the store and telemetry.

mod authority;
pub mod client;
mod limits;
pub(crate) mod request;
mod server;
mod socket_file;
mod unix_conn;

/// The generated API types, also reachable here for clients of the library.
pub use crate::proto;
pub use limits::{
    ApiLimits, DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_FILTERS,
    DEFAULT_MAX_FILTER_VALUES, DEFAULT_MAX_QUERIES, DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_SUBSCRIBERS,
};
pub use server::{serve, serve_service, ApiError, FlowApi, Listeners, TlsFiles};
