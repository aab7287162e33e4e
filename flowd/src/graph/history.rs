//! A node's graph from its history: one read of the window, page by page, so memory is the
//! graph's, not the window's. An unfiltered graph reads the summaries of the whole periods it
//! covers and only the records of the rest.

use prost::Message as _;

use super::{summary, GraphBuilder, LoadedPolicy};
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
    let mut builder = GraphBuilder::new();
    if matcher.matches_everything() {
        fold_summarised(store, &mut builder, since_ns, until_ns)?;
    } else {
        let range = if matcher.only_not_forwarded() {
            Range::NotForwarded { since_ns, until_ns }
        } else {
            Range::EndTime { since_ns, until_ns }
        };
        store.visit(range, |flow| {
            if matcher.matches(&flow) {
                builder.add(&flow);
            }
        })?;
    }
    let mut graph = builder.finish(max_edges, loaded);
    graph.since = Some(crate::flow::wire::timestamp_ns(since_ns));
    graph.until = Some(crate::flow::wire::timestamp_ns(until_ns));
    Ok(graph)
}

/// Every record of [since_ns, until_ns): the coarsest summaries that fit where the history has
/// them, the rest (partial minutes at the ends, periods without one) record by record.
fn fold_summarised(
    store: &FlowStore,
    builder: &mut GraphBuilder,
    since_ns: u64,
    until_ns: u64,
) -> Result<(), StoreError> {
    let gaps = store.visit_summaries(since_ns, until_ns, |period, bytes| {
        match summary::Summary::decode(bytes) {
            Ok(summary) => {
                summary::fold(builder, &summary);
                true
            }
            // Its records are still there: finer summaries or the records are read instead.
            Err(err) => {
                tracing::warn!(?period, error = %err, "a graph summary cannot be decoded");
                false
            }
        }
    })?;
    for gap in gaps {
        read_records(store, builder, gap.start, gap.end)?;
    }
    Ok(())
}

fn read_records(
    store: &FlowStore,
    builder: &mut GraphBuilder,
    since_ns: u64,
    until_ns: u64,
) -> Result<(), StoreError> {
    if since_ns >= until_ns {
        return Ok(());
    }
    store.visit(Range::EndTime { since_ns, until_ns }, |flow| {
        builder.add(&flow)
    })
}
