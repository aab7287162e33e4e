//! What a client asks for: filters over flows (Hubble-like allow and deny lists, plus policy),
//! compiled once per request and checked against every candidate flow.

mod filter;
mod labels;

pub use filter::{FilterError, FlowMatcher};
pub use labels::{LabelSelector, SelectorError};
