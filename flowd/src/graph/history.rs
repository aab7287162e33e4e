//! A node's graph from its history: one read of the window, page by page, so memory is the
//! graph's, not the window's. An unfiltered graph reads the summaries of the whole minutes it
//! covers and only the records of the others.

use prost::Message as _;

use super::{summary, GraphBuilder, LoadedPolicy};
use crate::{
    proto::v1 as pb,
    query::FlowMatcher,
    store::{period_span, FlowStore, Range, StoreError, SUMMARY_PERIOD_NS},
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

/// Every record of [since_ns, until_ns): whole periods from their summaries where the history
/// has one, the rest (partial periods at the ends, periods without one) record by record.
fn fold_summarised(
    store: &FlowStore,
    builder: &mut GraphBuilder,
    since_ns: u64,
    until_ns: u64,
) -> Result<(), StoreError> {
    let first_whole = since_ns.div_ceil(SUMMARY_PERIOD_NS);
    let past_whole = until_ns / SUMMARY_PERIOD_NS;
    let mut covered = Vec::new();
    if first_whole < past_whole {
        store.visit_summaries(first_whole..past_whole, |period, bytes| {
            match summary::Summary::decode(bytes) {
                Ok(summary) => {
                    summary::fold(builder, &summary);
                    covered.push(period);
                }
                // Its records are still there: read them instead.
                Err(err) => {
                    tracing::warn!(period, error = %err, "a graph summary cannot be decoded")
                }
            }
        })?;
    }
    let mut from = since_ns;
    for period in covered {
        let span = period_span(period);
        read_records(store, builder, from, span.start)?;
        from = span.end;
    }
    read_records(store, builder, from, until_ns)
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
