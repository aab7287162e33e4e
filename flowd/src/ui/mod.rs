//! The web UI: a page (service graph, flows table, policy board) and the JSON it reads, served
//! by the agent for its node and by the relay for the cluster. A front end like the gRPC API:
//! every answer comes from a `FlowService` (the agent's or the relay's), so the page shows what
//! GetGraph and GetFlows answer, with the same filters and limits.
//!
//! The page's files are compiled into the binary; the graph library is vendored from the npm
//! registry (ui/vendor/PINNED.json: version and integrity), so nothing is fetched at run time.

mod assets;
mod json;
mod serve;

pub use assets::CONTENT_SECURITY_POLICY;
pub use serve::{bind, router, serve};
