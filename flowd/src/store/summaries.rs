//! Summaries of whole periods of the history, kept beside the records for readers that fold a
//! long window (the workload graph): reading one summary instead of every record of a period
//! is what makes a day's graph cheap.
//!
//! Periods come in levels: minutes, ten minutes, two hours. A minute's summary is made from
//! its records, a coarser one from the summaries of the periods it consists of, so a window
//! reads the coarsest summaries that fit, finer ones at its edges, and records only for the
//! partial minutes at its ends and for periods without a summary.
//!
//! The store does not know what a summary says; it keeps one invariant: a period's summary is
//! only ever stored when it covers exactly the records of that period held at that moment (for
//! a minute the caller says how many it folded and the store counts; a coarser one is only
//! made, in one transaction, from the stored summaries of all its parts), and any later change
//! to that period's records (a late record, retention) deletes it, and the summaries of every
//! coarser period containing them, in the same transaction. A period without a summary is read
//! from finer summaries or record by record, so a lost or refused summary costs speed, never
//! truth.

use std::{collections::BTreeSet, ops::Range};

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::StoreError;

/// Keys are [`Period::key`]: the level in the top byte, the period's index below it. Minute
/// keys are their plain index, as histories before levels wrote them.
pub(super) const SUMMARIES: TableDefinition<u64, &[u8]> = TableDefinition::new("summaries");

/// The length of a period at each level, finest first; each divides the next.
const LEVEL_NS: [u64; 3] = [60_000_000_000, 600_000_000_000, 7_200_000_000_000];
const LEVEL_SHIFT: u32 = 56;

/// A period of end times that can have a summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    level: u8,
    index: u64,
}

impl Period {
    /// The minute an end time (ns since the epoch) falls in.
    pub fn minute_of(end_ns: u64) -> Self {
        Self::at(0, end_ns)
    }

    fn at(level: u8, end_ns: u64) -> Self {
        Self {
            level,
            index: end_ns / LEVEL_NS[usize::from(level)],
        }
    }

    /// 0 for a minute, then coarser.
    pub fn level(self) -> u8 {
        self.level
    }

    pub fn key(self) -> u64 {
        (u64::from(self.level) << LEVEL_SHIFT) | self.index
    }

    pub fn from_key(key: u64) -> Option<Self> {
        let level = u8::try_from(key >> LEVEL_SHIFT).ok()?;
        (usize::from(level) < LEVEL_NS.len()).then_some(Self {
            level,
            index: key & ((1 << LEVEL_SHIFT) - 1),
        })
    }

    fn length_ns(self) -> u64 {
        LEVEL_NS[usize::from(self.level)]
    }

    /// The end-time range [start, end) of the period, in ns.
    pub fn span(self) -> Range<u64> {
        let start = self.index.saturating_mul(self.length_ns());
        start..start.saturating_add(self.length_ns())
    }

    /// The next coarser period containing this one, if there is a coarser level.
    pub fn parent(self) -> Option<Self> {
        let level = self.level + 1;
        (usize::from(level) < LEVEL_NS.len()).then(|| Self::at(level, self.span().start))
    }

    /// The periods of the next finer level this one consists of (none for a minute).
    pub fn parts(self) -> Vec<Self> {
        let Some(level) = self.level.checked_sub(1) else {
            return Vec::new();
        };
        let span = self.span();
        let length = LEVEL_NS[usize::from(level)];
        (span.start / length..span.end / length)
            .map(|index| Self { level, index })
            .collect()
    }

    fn with_coarser(self) -> impl Iterator<Item = Self> {
        std::iter::successors(Some(self), |p| p.parent())
    }
}

/// The summarised periods, at every level, that hold any of a batch's end times, each once. End
/// times of a batch are mostly in one or two minutes, so consecutive repeats are skipped
/// before the set is asked.
pub(super) fn touched(
    summarised: &BTreeSet<Period>,
    end_times: impl Iterator<Item = u64>,
) -> Vec<Period> {
    let mut touched = Vec::new();
    let mut last = None;
    for end in end_times {
        let minute = Period::minute_of(end);
        if last == Some(minute) {
            continue;
        }
        last = Some(minute);
        for period in minute.with_coarser() {
            if summarised.contains(&period) && !touched.contains(&period) {
                touched.push(period);
            }
        }
    }
    touched
}

/// Deletes the summaries of `periods` inside the transaction that changes their records.
pub(super) fn invalidate(txn: &WriteTransaction, periods: &[Period]) -> Result<(), StoreError> {
    if periods.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(SUMMARIES)?;
    for period in periods {
        table.remove(period.key())?;
    }
    Ok(())
}

/// Every period that has a summary; keys of levels this flowd does not know are left out and
/// never read.
pub(super) fn periods(table: &Table<u64, &[u8]>) -> Result<BTreeSet<Period>, StoreError> {
    let mut periods = BTreeSet::new();
    for entry in table.iter()? {
        if let Some(period) = Period::from_key(entry?.0.value()) {
            periods.insert(period);
        }
    }
    Ok(periods)
}

/// Covers [since_ns, until_ns) with stored summaries, coarsest first: `visit` is given each
/// summary used (it returns false for one it cannot use, whose span is then covered by finer
/// levels), and `gap` each end-time range no summary covers, in ascending order, adjacent
/// ranges joined.
pub(super) fn cover(
    table: &impl ReadableTable<u64, &'static [u8]>,
    since_ns: u64,
    until_ns: u64,
    visit: &mut impl FnMut(Period, &[u8]) -> bool,
) -> Result<Vec<Range<u64>>, StoreError> {
    let mut gaps = Vec::new();
    cover_at(table, LEVEL_NS.len(), since_ns..until_ns, visit, &mut gaps)?;
    Ok(gaps)
}

/// `levels` is how many of the finest levels may still be used.
fn cover_at(
    table: &impl ReadableTable<u64, &'static [u8]>,
    levels: usize,
    window: Range<u64>,
    visit: &mut impl FnMut(Period, &[u8]) -> bool,
    gaps: &mut Vec<Range<u64>>,
) -> Result<(), StoreError> {
    if window.start >= window.end {
        return Ok(());
    }
    let Some(level) = levels.checked_sub(1) else {
        match gaps.last_mut() {
            Some(last) if last.end == window.start => last.end = window.end,
            _ => gaps.push(window),
        }
        return Ok(());
    };
    let length = LEVEL_NS[level];
    let (first, past) = (window.start.div_ceil(length), window.end / length);
    if first >= past {
        return cover_at(table, level, window, visit, gaps);
    }
    let key = |index: u64| {
        Period {
            level: level as u8,
            index,
        }
        .key()
    };
    let mut from = window.start;
    for entry in table.range(key(first)..key(past))? {
        let (key, summary) = entry?;
        let Some(period) = Period::from_key(key.value()) else {
            continue;
        };
        if !visit(period, summary.value()) {
            continue;
        }
        let span = period.span();
        cover_at(table, level, from..span.start, visit, gaps)?;
        from = span.end;
    }
    cover_at(table, level, from..window.end, visit, gaps)
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase as _;

    use super::*;

    const MINUTE: u64 = LEVEL_NS[0];

    #[test]
    fn minute_keys_are_their_index_and_levels_nest() {
        let minute = Period::minute_of(29_000_123 * MINUTE + 5);
        assert_eq!(minute.key(), 29_000_123);
        assert_eq!(Period::from_key(minute.key()), Some(minute));
        let ten = minute.parent().unwrap();
        assert_eq!(ten.span(), 29_000_120 * MINUTE..29_000_130 * MINUTE);
        assert_eq!(ten.parts().len(), 10);
        assert!(ten.parts().contains(&minute));
        let two_hours = ten.parent().unwrap();
        assert_eq!(two_hours.parts().len(), 12);
        assert!(two_hours.span().contains(&minute.span().start));
        assert_eq!(two_hours.parent(), None);
        assert_eq!(Period::from_key(two_hours.key()), Some(two_hours));
        assert_eq!(Period::from_key(7 << LEVEL_SHIFT), None);
    }

    #[test]
    fn a_change_touches_its_minute_and_every_summarised_period_above_it() {
        let minute = Period::minute_of(29_000_123 * MINUTE);
        let ten = minute.parent().unwrap();
        let other = Period::minute_of(29_000_124 * MINUTE);
        let summarised: BTreeSet<Period> = [minute, ten, other].into();
        let touched = touched(
            &summarised,
            [minute.span().start, minute.span().start + 1].into_iter(),
        );
        assert_eq!(touched, vec![minute, ten]);
    }

    fn covered(
        stored: &[Period],
        unusable: &[Period],
        window: Range<u64>,
    ) -> (Vec<Period>, Vec<Range<u64>>) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(SUMMARIES).unwrap();
            for p in stored {
                table.insert(p.key(), b"s".as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(SUMMARIES).unwrap();
        let mut used = Vec::new();
        let gaps = cover(&table, window.start, window.end, &mut |p, _| {
            if unusable.contains(&p) {
                return false;
            }
            used.push(p);
            true
        })
        .unwrap();
        (used, gaps)
    }

    #[test]
    fn a_window_is_covered_coarsest_first_and_the_rest_left_as_gaps() {
        // Two hours summarised at every level, from 29_001_600 (a two-hour boundary).
        let start = 29_001_600 * MINUTE;
        let two_hours = Period::at(2, start);
        let tens = two_hours.parts();
        let minutes: Vec<Period> = tens.iter().flat_map(|t| t.parts()).collect();
        let stored: Vec<Period> = [two_hours]
            .iter()
            .chain(&tens)
            .chain(&minutes)
            .copied()
            .collect();

        // The whole two hours: one summary.
        let (used, gaps) = covered(&stored, &[], start..start + 120 * MINUTE);
        assert_eq!(used, vec![two_hours]);
        assert!(gaps.is_empty());

        // From 30 s into minute 3 to minute 25 and 10 s: records at the ends, minutes 4..10,
        // the ten minutes 10..20, minutes 20..25.
        let (used, gaps) = covered(
            &stored,
            &[],
            start + 3 * MINUTE + MINUTE / 2..start + 25 * MINUTE + MINUTE / 6,
        );
        assert_eq!(used.iter().filter(|p| p.level() == 1).count(), 1);
        assert_eq!(used.iter().filter(|p| p.level() == 0).count(), 6 + 5);
        assert_eq!(
            gaps,
            vec![
                start + 3 * MINUTE + MINUTE / 2..start + 4 * MINUTE,
                start + 25 * MINUTE..start + 25 * MINUTE + MINUTE / 6
            ]
        );

        // An unusable ten-minute summary is covered by its minutes; a missing minute is a gap.
        let missing = minutes[13];
        let stored: Vec<Period> = stored
            .into_iter()
            .filter(|p| *p != missing && *p != two_hours)
            .collect();
        let (used, gaps) = covered(&stored, &[tens[1]], start..start + 30 * MINUTE);
        assert_eq!(used.iter().filter(|p| p.level() == 1).count(), 2);
        assert_eq!(used.iter().filter(|p| p.level() == 0).count(), 9);
        assert_eq!(gaps, vec![missing.span()]);
    }

    #[test]
    fn a_window_without_summaries_is_one_gap() {
        let (used, gaps) = covered(&[], &[], 0..u64::MAX / 2);
        assert!(used.is_empty());
        assert_eq!(gaps, vec![0..u64::MAX / 2]);
    }
}
