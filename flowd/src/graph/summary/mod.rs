//! Graph summaries: each whole minute of history folded once, at ingest, and each ten minutes
//! and two hours folded from those, so a graph over an hour reads a handful of summaries and a
//! few minutes of records instead of every record. The store keeps a summary true or deletes
//! it (`store::summaries`); this side folds and reads them. Only unfiltered graphs use them: a
//! filter needs the records.

mod convert;
mod format;
mod periods;
mod stage;

pub use periods::{ClosedPeriod, Periods};
pub use stage::{run, store_closed};

pub(super) use convert::fold;
pub(super) use format::Summary;

#[cfg(test)]
mod tests;
