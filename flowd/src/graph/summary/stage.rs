//! The summary stage: follows what the store stage stores, folds it per period, and offers
//! each period to the history once no more records can arrive for it.

use std::time::{Duration, SystemTime};

use super::periods::{ClosedPeriod, Periods};
use crate::{
    query::FlowMatcher,
    store::{system_time_ns, Backlog, Hub, SubscriptionEvent},
};

/// How often closed periods are looked for.
const CLOSE_EVERY: Duration = Duration::from_secs(10);

/// Runs until the store stage closes the hub; `settle` is how long after a period ends its
/// records may still arrive (the agent derives it from its flush timeouts).
pub async fn run(hub: Hub, settle: Duration) {
    let mut subscription = hub.subscribe(Backlog::None, true, FlowMatcher::all());
    let mut periods = Periods::default();
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
                let before = system_time_ns(SystemTime::now()).saturating_sub(settle.as_nanos() as u64);
                offer(&hub, periods.take_closed(before)).await;
            }
        }
    }
    // Everything is stored by now: the open periods are complete as they stand, and a record
    // that still comes for one after a restart deletes its summary.
    offer(&hub, periods.take_all()).await;
}

async fn offer(hub: &Hub, closed: Vec<ClosedPeriod>) {
    if closed.is_empty() {
        return;
    }
    let store = hub.store().clone();
    let stored = tokio::task::spawn_blocking(move || {
        for period in closed {
            match period.store(&store) {
                Ok(true) => {}
                Ok(false) => tracing::debug!(
                    period = period.period(),
                    "the history holds records of this period the summary did not see; not summarised"
                ),
                Err(err) => {
                    tracing::warn!(error = %err, period = period.period(), "storing a graph summary");
                }
            }
        }
    })
    .await;
    if let Err(err) = stored {
        tracing::warn!(error = %err, "graph summary task failed");
    }
}
