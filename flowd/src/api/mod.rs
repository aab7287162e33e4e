//! The gRPC front end (flowd.v1): a thin adapter over the store and telemetry.

pub mod client;
mod convert;
pub mod proto;
mod server;

pub use convert::flow_to_proto;
pub use server::{serve, ApiError, FlowApi, Listeners};
