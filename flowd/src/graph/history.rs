//! A node's graph from its history: one read of the window, page by page, so memory is the
//! graph's, not the window's.

use super::{GraphBuilder, LoadedPolicy};
use crate::{
    proto::v1 as pb,
    query::FlowMatcher,
    store::{FlowStore, Range, StoreError},
};

/// Folds the stored flows that ended in [since_ns, until_ns) and match `matcher`.
pub fn from_history(
    store: &FlowStore,
    matcher: &FlowMatcher,
    since_ns: u64,
    until_ns: u64,
    max_edges: usize,
    loaded: &[LoadedPolicy],
) -> Result<pb::GetGraphResponse, StoreError> {
    let range = if matcher.only_not_forwarded() {
        Range::NotForwarded { since_ns, until_ns }
    } else {
        Range::EndTime { since_ns, until_ns }
    };
    let mut builder = GraphBuilder::new();
    store.visit(range, |flow| {
        if matcher.matches(&flow) {
            builder.add(&flow);
        }
    })?;
    let mut graph = builder.finish(max_edges, loaded);
    graph.since = Some(crate::flow::wire::timestamp_ns(since_ns));
    graph.until = Some(crate::flow::wire::timestamp_ns(until_ns));
    Ok(graph)
}
