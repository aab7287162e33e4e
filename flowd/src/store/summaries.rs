//! Summaries of whole periods of the history, kept beside the records for readers that fold a
//! long window (the workload graph): reading one summary instead of every record of a minute is
//! what makes a day's graph cheap.
//!
//! The store does not know what a summary says; it keeps one invariant: a period's summary is
//! only ever stored when it covers exactly the records of that period held at that moment (the
//! caller says how many it folded, the store counts), and any later change to that period's
//! records (a late record, retention) deletes it in the same transaction. A period without a
//! summary is read record by record, so a lost or refused summary costs speed, never truth.

use std::{collections::BTreeSet, ops::Range};

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::StoreError;

pub(super) const SUMMARIES: TableDefinition<u64, &[u8]> = TableDefinition::new("summaries");

/// A summary covers the records whose end time falls in one period of this length.
pub const SUMMARY_PERIOD_NS: u64 = 60_000_000_000;

/// The period an end time (ns since the epoch) falls in.
pub fn summary_period(end_ns: u64) -> u64 {
    end_ns / SUMMARY_PERIOD_NS
}

/// The end-time range [start, end) of a period, in ns.
pub fn period_span(period: u64) -> Range<u64> {
    let start = period.saturating_mul(SUMMARY_PERIOD_NS);
    start..start.saturating_add(SUMMARY_PERIOD_NS)
}

/// The periods of a batch's end times that have a summary, each once. End times of a batch are
/// mostly in one or two periods, so consecutive repeats are skipped before the set is asked.
pub(super) fn touched(
    summarised: &BTreeSet<u64>,
    end_times: impl Iterator<Item = u64>,
) -> Vec<u64> {
    let mut touched = Vec::new();
    let mut last = None;
    for end in end_times {
        let period = summary_period(end);
        if last == Some(period) {
            continue;
        }
        last = Some(period);
        if summarised.contains(&period) && !touched.contains(&period) {
            touched.push(period);
        }
    }
    touched
}

/// Deletes the summaries of `periods` inside the transaction that changes their records.
pub(super) fn invalidate(txn: &WriteTransaction, periods: &[u64]) -> Result<(), StoreError> {
    if periods.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(SUMMARIES)?;
    for period in periods {
        table.remove(period)?;
    }
    Ok(())
}

/// Every period that has a summary.
pub(super) fn periods(table: &Table<u64, &[u8]>) -> Result<BTreeSet<u64>, StoreError> {
    let mut periods = BTreeSet::new();
    for entry in table.iter()? {
        periods.insert(entry?.0.value());
    }
    Ok(periods)
}
