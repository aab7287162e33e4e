//! Node-local history: every record gets a cursor and is kept durably (redb); subscribers replay
//! it (last N, a time range, or from a cursor) and follow new records as they arrive.

mod db;
mod hub;
mod summaries;

pub use db::{
    system_time_ns, time_ns, FlowStore, Range, Retention, StoreError, WriteFailure, PAGE,
};
pub use hub::{run, Backlog, Hub, StoreStage, Subscription, SubscriptionEvent};
pub use summaries::Period;
