//! Graph summaries: each whole minute of history folded once, at ingest, so a graph over an
//! hour reads sixty summaries and a few minutes of records instead of every record. The store
//! keeps a summary true or deletes it (`store::summaries`); this side folds and reads them.
//! Only unfiltered graphs use them: a filter needs the records.

mod convert;
mod format;
mod periods;
mod stage;

pub use periods::{ClosedPeriod, Periods};
pub use stage::run;

pub(super) use convert::fold;
pub(super) use format::Summary;

#[cfg(test)]
mod tests;
