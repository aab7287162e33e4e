//! Node-local history: every record gets a cursor, the last N stay queryable, and followers get
//! new records as they arrive.

mod history;
mod hub;

pub use history::{History, StoredFlow};
pub use hub::{run, Hub, Subscription, SubscriptionEvent};
