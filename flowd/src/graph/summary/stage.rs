//! The summary stage: follows what the store stage stores, folds it per period, and offers
//! each period to the history once no more records can arrive for it.

use std::time::{Duration, SystemTime};

use super::{
    convert,
    periods::{ClosedPeriod, Periods},
};
use crate::{
    query::FlowMatcher,
    store::{system_time_ns, Backlog, FlowStore, Hub, Period, SubscriptionEvent},
};

/// How often closed periods are looked for.
const CLOSE_EVERY: Duration = Duration::from_secs(10);

/// Runs until the store stage closes the hub; `settle` is how long after a period ends its
/// records may still arrive (the agent derives it from its flush timeouts).
pub async fn run(hub: Hub, settle: Duration) {
    let mut subscription = hub.subscribe(Backlog::None, true, FlowMatcher::all());
    let mut periods = Periods::default();
    // Periods that ended before this can get no more records.
    let settled = || system_time_ns(SystemTime::now()).saturating_sub(settle.as_nanos() as u64);
    let mut closing = tokio::time::interval(CLOSE_EVERY);
    closing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = subscription.next() => match event {
                Some(Ok(SubscriptionEvent::Flow(flow))) => periods.add(&flow),
                Some(Ok(SubscriptionEvent::Lost { count, .. })) => {
                    tracing::debug!(
                        count,
                        open_periods = periods.len(),
                        "graph summaries fell behind the store; those periods are read record by record"
                    );
                    periods.clear();
                }
                Some(Ok(SubscriptionEvent::Watermark(_))) => {}
                Some(Err(err)) => tracing::warn!(error = %err, "graph summaries: reading the history"),
                None => break,
            },
            _ = closing.tick() => {
                let before = settled();
                offer(&hub, periods.take_closed(before), before).await;
            }
        }
    }
    // Everything is stored by now: the open periods are complete as they stand, and a record
    // that still comes for one after a restart deletes its summary.
    offer(&hub, periods.take_all(), settled()).await;
}

async fn offer(hub: &Hub, closed: Vec<ClosedPeriod>, before_ns: u64) {
    if closed.is_empty() {
        return;
    }
    let store = hub.store().clone();
    let stored = tokio::task::spawn_blocking(move || store_closed(&store, closed, before_ns)).await;
    if let Err(err) = stored {
        tracing::warn!(error = %err, "graph summary task failed");
    }
}

/// Stores the summaries of `closed` minutes, then of the coarser periods they complete that
/// ended before `before_ns`.
pub fn store_closed(store: &FlowStore, closed: Vec<ClosedPeriod>, before_ns: u64) {
    let mut stored = Vec::new();
    for period in closed {
        match period.store(store) {
            Ok(true) => stored.push(period.period()),
            Ok(false) => tracing::debug!(
                period = ?period.period(),
                "the history holds records of this period the summary did not see; not summarised"
            ),
            Err(err) => {
                tracing::warn!(error = %err, period = ?period.period(), "storing a graph summary");
            }
        }
    }
    combine_ended(store, stored, before_ns);
}

/// Summarises each coarser period that has ended and holds one of `stored`, from its parts,
/// then the periods above those, level by level.
fn combine_ended(store: &FlowStore, mut stored: Vec<Period>, before_ns: u64) {
    while !stored.is_empty() {
        let mut parents: Vec<Period> = stored
            .iter()
            .filter_map(|p| p.parent())
            .filter(|p| p.span().end <= before_ns)
            .collect();
        parents.dedup();
        stored.clear();
        for parent in parents {
            match store.combine_summaries(parent, convert::combine) {
                Ok(true) => stored.push(parent),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(error = %err, period = ?parent, "storing a graph summary");
                }
            }
        }
    }
}
