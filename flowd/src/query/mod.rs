//! What a client asks for: filters over flows (Hubble-like allow and deny lists, plus policy),
//! compiled once per request and checked against every candidate flow.

//! Label filters use the policy engine's selector matcher (Kubernetes string form), so a label
//! means the same thing in a query as in a policy.

mod filter;

pub use filter::{FilterError, FlowMatcher};
