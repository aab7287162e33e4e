//! Durable node-local history in redb (ACID, crash-safe, copy-on-write B-trees).
//!
//! Records are stored as encoded `flowd.v1.Flow` messages: the on-disk format is the versioned
//! public API, so a newer agent reads an older history. Tables:
//! - `records`: cursor -> encoded flow
//! - `by_end_time`: (end time ns, cursor) -> () for since/until queries
//! - `not_forwarded`: (end time ns, cursor) -> () for "what was dropped or denied" on big histories
//! - `meta`: counters kept in the same transactions (total encoded bytes, the next cursor: cursors
//!   never go back, even after retention emptied the history)
//! - `summaries`: period -> a caller's summary of that period's records (see `summaries`)

use std::{
    collections::BTreeSet,
    ops::ControlFlow,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering as AtomicOrdering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, SystemTime},
};

use prost::Message as _;
use redb::{
    Database, Durability, ReadableDatabase as _, ReadableTable, ReadableTableMetadata as _,
    TableDefinition,
};

use super::summaries::{self, Period, SUMMARIES};
use crate::proto::v1 as pb;

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const BY_END_TIME: TableDefinition<(u64, u64), ()> = TableDefinition::new("by_end_time");
const NOT_FORWARDED: TableDefinition<(u64, u64), ()> = TableDefinition::new("not_forwarded");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_BYTES: &str = "record_bytes";
const META_SCHEMA: &str = "schema";
const META_NEXT_CURSOR: &str = "next_cursor";
/// The next cursor and record bytes as of the last write that kept the summaries true: a
/// history written since by a flowd that knows no summaries has other values, and its
/// summaries are dropped at open.
const META_SUMMARIES_CURSOR: &str = "summaries_cursor";
const META_SUMMARIES_BYTES: &str = "summaries_bytes";
const SCHEMA_VERSION: u64 = 1;

/// Records read per read transaction while paging through history.
pub const PAGE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the history directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot open the flow history {path}: {source}. If another agent uses it, stop that one \
         or choose another --store-path; if the file is damaged, move it away"
    )]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("flow history {path} is damaged and could not be moved aside: {source}; move it away by hand")]
    MoveAside {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("flow history {path} was written by a newer flowd (schema {found}, this one reads {SCHEMA_VERSION})")]
    Schema { path: PathBuf, found: u64 },
    #[error("flow history: {0}")]
    Database(String),
    #[error(
        "the flow history {path} is not open after a write failed ({cause}); it is reopened \
         on the next write. Free space on its filesystem or check the disk"
    )]
    Unavailable { path: PathBuf, cause: String },
    #[error("a record in the history cannot be decoded at cursor {cursor}: {source}")]
    Decode {
        cursor: u64,
        source: prost::DecodeError,
    },
}

macro_rules! db_error {
    ($($t:ty),*) => { $( impl From<$t> for StoreError {
        fn from(err: $t) -> Self { StoreError::Database(err.to_string()) }
    } )* };
}
db_error!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Retention: the oldest records go first when either bound is exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

#[derive(Debug, Default)]
struct Counts {
    next_cursor: u64,
    bytes: u64,
    records: u64,
    /// Recorded time of the newest record at open, so a restart never stamps an earlier one.
    last_recorded_ns: u64,
    /// Periods that have a summary.
    summarised: BTreeSet<Period>,
}

pub struct FlowStore {
    /// `None` between a failed write and the reopen that recovers it. Readers and the writer
    /// share the lock; only the reopen takes it exclusively.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    cache_bytes: usize,
    /// Why writing last failed and since when, until a write succeeds again.
    failing: Mutex<Option<WriteFailure>>,
    retention: Retention,
    /// The writers' counts: append and retention hold the lock across their transaction,
    /// fsync included, so they take turns.
    counts: Mutex<Counts>,
    /// Where a damaged history found at open was moved.
    moved_aside: Option<PathBuf>,
    /// The same counts as of the last commit, for readers (status, metrics, API handlers on the
    /// async runtime), which must never wait for a writer's fsync.
    published: PublishedCounts,
    /// No record stored from now on gets a recorded time below this (ns since the epoch): the
    /// last recorded time given, or a later watermark. Wall-clock steps back cannot break it.
    recorded_floor: AtomicU64,
}

#[derive(Debug, Default)]
struct PublishedCounts {
    next_cursor: AtomicU64,
    bytes: AtomicU64,
    records: AtomicU64,
}

impl PublishedCounts {
    fn publish(&self, counts: &Counts) {
        self.next_cursor
            .store(counts.next_cursor, AtomicOrdering::Release);
        self.bytes.store(counts.bytes, AtomicOrdering::Release);
        self.records.store(counts.records, AtomicOrdering::Release);
    }
}

/// The history could not be written: the first failure of a run of them, and the last cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteFailure {
    pub since: SystemTime,
    pub error: String,
}

/// Where a scan starts and what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// Cursors after this one, ascending.
    AfterCursor(u64),
    /// Flows whose end time is in [since, until), by end time.
    EndTime { since_ns: u64, until_ns: u64 },
    /// As `EndTime`, only flows not forwarded (dropped, denied, not enforced).
    NotForwarded { since_ns: u64, until_ns: u64 },
}

/// A wall-clock time in nanoseconds since the epoch (0 before it).
pub fn system_time_ns(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn time_ns(time: &pbjson_types::Timestamp) -> u64 {
    (time.seconds.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(time.nanos.max(0) as u64)
}

fn end_ns(flow: &pb::Flow) -> u64 {
    flow.end_time.as_ref().map(time_ns).unwrap_or(0)
}

impl FlowStore {
    pub fn open(path: &Path, retention: Retention, cache_bytes: usize) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: dir.to_owned(),
                source,
            })?;
        }
        let create = || Database::builder().set_cache_size(cache_bytes).create(path);
        let mut moved_aside = None;
        let db = match create() {
            Ok(db) => db,
            Err(err) if is_damaged(&err) => {
                // Crash-looping on a damaged file helps nobody: keep it for inspection and
                // start a new history.
                let aside = aside_name(path);
                std::fs::rename(path, &aside).map_err(|source| StoreError::MoveAside {
                    path: path.to_owned(),
                    source,
                })?;
                tracing::error!(
                    path = %path.display(), moved_to = %aside.display(), error = %err,
                    "the flow history is damaged; moved it aside and started a new one"
                );
                moved_aside = Some(aside);
                create().map_err(|source| StoreError::Open {
                    path: path.to_owned(),
                    source,
                })?
            }
            Err(source) => {
                return Err(StoreError::Open {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let store = Self {
            db: RwLock::new(Some(db)),
            cache_bytes,
            failing: Mutex::new(None),
            moved_aside,
            path: path.to_owned(),
            retention,
            counts: Mutex::new(Counts::default()),
            published: PublishedCounts::default(),
            recorded_floor: AtomicU64::new(0),
        };
        store.initialise()?;
        Ok(store)
    }

    /// Creates the tables on first use and recovers the counters after a restart.
    fn initialise(&self) -> Result<(), StoreError> {
        let counts = self.with_db(|db| self.read_counts(db))?;
        self.recorded_floor
            .fetch_max(counts.last_recorded_ns, AtomicOrdering::AcqRel);
        self.published.publish(&counts);
        if let Ok(mut guard) = self.counts.lock() {
            *guard = counts;
        }
        Ok(())
    }

    fn read_counts(&self, db: &Database) -> Result<Counts, StoreError> {
        let txn = db.begin_write()?;
        let counts = {
            let records = txn.open_table(RECORDS)?;
            txn.open_table(BY_END_TIME)?;
            txn.open_table(NOT_FORWARDED)?;
            let mut meta = txn.open_table(META)?;
            let schema = meta.get(META_SCHEMA)?.map(|v| v.value());
            match schema {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(StoreError::Schema {
                        path: self.path.clone(),
                        found,
                    })
                }
                Some(_) => {}
                None => {
                    meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
                }
            }
            let newest = records.last()?;
            let last = newest.as_ref().map(|(k, _)| k.value()).unwrap_or(0);
            let last_recorded_ns = newest
                .and_then(|(_, v)| pb::Flow::decode(v.value()).ok())
                .and_then(|flow| flow.recorded_time)
                .map(|t| time_ns(&t))
                .unwrap_or(0);
            let bytes = meta.get(META_BYTES)?.map(|v| v.value()).unwrap_or(0);
            // A consumer resuming after a cursor must never be given a smaller one again: the
            // records may all be gone, the counter is not (histories before it had none).
            let persisted = meta.get(META_NEXT_CURSOR)?.map(|v| v.value()).unwrap_or(0);
            let stamp = (
                meta.get(META_SUMMARIES_CURSOR)?.map(|v| v.value()),
                meta.get(META_SUMMARIES_BYTES)?.map(|v| v.value()),
            );
            let mut table = txn.open_table(SUMMARIES)?;
            if stamp != (Some(persisted), Some(bytes)) {
                table.retain(|_, _| false)?;
                meta.insert(META_SUMMARIES_CURSOR, persisted)?;
                meta.insert(META_SUMMARIES_BYTES, bytes)?;
            }
            Counts {
                next_cursor: (last + 1).max(persisted),
                bytes,
                records: records.len()?,
                last_recorded_ns,
                summarised: summaries::periods(&table)?,
            }
        };
        txn.commit()?;
        Ok(counts)
    }

    /// Runs `work` on the open database, or says why there is none.
    fn with_db<T>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self
            .db
            .read()
            .map_err(|_| StoreError::Database("history lock poisoned".into()))?;
        match guard.as_ref() {
            Some(db) => work(db),
            None => Err(StoreError::Unavailable {
                path: self.path.clone(),
                cause: self
                    .write_failure()
                    .map(|f| f.error)
                    .unwrap_or_else(|| "unknown".into()),
            }),
        }
    }

    /// Why the history cannot be written now, if it cannot.
    pub fn write_failure(&self) -> Option<WriteFailure> {
        self.failing.lock().ok().and_then(|f| f.clone())
    }

    /// After a failed write redb refuses every later operation until the file is reopened
    /// (which recovers it to its last commit); reopening at once keeps readers working while
    /// the disk stays full.
    fn reopen(&self, counts: &mut Counts) -> Result<(), StoreError> {
        let mut guard = self
            .db
            .write()
            .map_err(|_| StoreError::Database("history lock poisoned".into()))?;
        // The old handle goes first: the file is locked while it is open.
        drop(guard.take());
        let db = Database::builder()
            .set_cache_size(self.cache_bytes)
            .create(&self.path)
            .map_err(|source| StoreError::Open {
                path: self.path.clone(),
                source,
            })?;
        *counts = self.read_counts(&db)?;
        *guard = Some(db);
        self.published.publish(counts);
        Ok(())
    }

    fn note_failure(&self, error: &StoreError) {
        if let Ok(mut failing) = self.failing.lock() {
            match failing.as_mut() {
                Some(failure) => failure.error = error.to_string(),
                None => {
                    tracing::error!(path = %self.path.display(), error = %error, "writing the flow history failed; holding records until it recovers");
                    *failing = Some(WriteFailure {
                        since: SystemTime::now(),
                        error: error.to_string(),
                    });
                }
            }
        }
    }

    fn note_success(&self) {
        if let Ok(mut failing) = self.failing.lock() {
            if let Some(failure) = failing.take() {
                let seconds = failure.since.elapsed().map(|d| d.as_secs()).unwrap_or(0);
                tracing::warn!(path = %self.path.display(), failing_for_seconds = seconds, "the flow history is written again");
            }
        }
    }

    /// Raises the recorded-time floor to `now` (if later) and returns it: a promise that no
    /// record stored after this call is stamped earlier. Appends stamp their records with it,
    /// and the store stage sends it to followers as their watermark.
    pub fn advance_watermark(&self, now: SystemTime) -> u64 {
        let now_ns = system_time_ns(now);
        self.recorded_floor
            .fetch_max(now_ns, AtomicOrdering::AcqRel)
            .max(now_ns)
    }

    /// The recorded time of the newest record, or a later watermark already given.
    pub fn watermark(&self) -> u64 {
        self.recorded_floor.load(AtomicOrdering::Acquire)
    }

    /// Stores `flows` in one transaction, giving each the next cursor. Durable on return.
    pub fn append(&self, mut flows: Vec<pb::Flow>) -> Result<Vec<Arc<pb::Flow>>, StoreError> {
        self.append_in_place(&mut flows)?;
        Ok(flows.into_iter().map(Arc::new).collect())
    }

    /// As `append`, setting each flow's cursor in place. When it fails nothing of `flows` is
    /// stored, the failure is reported by `write_failure`, and the same flows may be offered
    /// again: the history reopens first.
    pub fn append_in_place(&self, flows: &mut [pb::Flow]) -> Result<(), StoreError> {
        let mut counts = self
            .counts
            .lock()
            .map_err(|_| StoreError::Database("counter lock poisoned".into()))?;
        let mut already_stored = 0;
        if self.write_failure().is_some() || self.db.read().map(|d| d.is_none()).unwrap_or(true) {
            if let Err(err) = self.reopen(&mut counts) {
                self.note_failure(&err);
                return Err(err);
            }
            already_stored = landed(flows, counts.next_cursor);
        }
        let rest = &mut flows[already_stored..];
        let recorded_ns = self.advance_watermark(SystemTime::now());
        let result = self.with_db(|db| Self::write(db, &counts, rest, recorded_ns));
        match result {
            Ok((added_bytes, invalidated)) => {
                counts.next_cursor += rest.len() as u64;
                counts.bytes += added_bytes;
                counts.records += rest.len() as u64;
                for period in invalidated {
                    counts.summarised.remove(&period);
                }
                self.published.publish(&counts);
                self.note_success();
                Ok(())
            }
            Err(err) => {
                self.note_failure(&err);
                if let Err(reopen) = self.reopen(&mut counts) {
                    tracing::debug!(error = %reopen, "reopening the history after a failed write");
                } else if landed(flows, counts.next_cursor) == flows.len() {
                    // The commit reached the disk before the error (a failed final sync):
                    // these records are stored, and writing them again would repeat them.
                    self.note_success();
                    return Ok(());
                }
                Err(err)
            }
        }
    }

    /// One transaction adding `flows` after `counts`; returns the encoded bytes added and the
    /// periods whose summaries it deleted.
    fn write(
        db: &Database,
        counts: &Counts,
        flows: &mut [pb::Flow],
        recorded_ns: u64,
    ) -> Result<(u64, Vec<Period>), StoreError> {
        let recorded = crate::flow::wire::timestamp_ns(recorded_ns);
        let txn = db.begin_write()?;
        let mut added_bytes = 0u64;
        {
            let mut records = txn.open_table(RECORDS)?;
            let mut by_end = txn.open_table(BY_END_TIME)?;
            let mut not_forwarded = txn.open_table(NOT_FORWARDED)?;
            let mut buffer = Vec::with_capacity(512);
            for (offset, flow) in flows.iter_mut().enumerate() {
                let cursor = counts.next_cursor + offset as u64;
                flow.cursor = cursor;
                flow.recorded_time = Some(recorded);
                buffer.clear();
                flow.encode(&mut buffer)
                    .map_err(|err| StoreError::Database(err.to_string()))?;
                records.insert(cursor, buffer.as_slice())?;
                let end = end_ns(flow);
                by_end.insert((end, cursor), ())?;
                if flow.verdict != pb::Verdict::Forwarded as i32 {
                    not_forwarded.insert((end, cursor), ())?;
                }
                added_bytes += buffer.len() as u64;
            }
            let mut meta = txn.open_table(META)?;
            let bytes = counts.bytes + added_bytes;
            let next_cursor = counts.next_cursor + flows.len() as u64;
            meta.insert(META_BYTES, bytes)?;
            meta.insert(META_NEXT_CURSOR, next_cursor)?;
            meta.insert(META_SUMMARIES_BYTES, bytes)?;
            meta.insert(META_SUMMARIES_CURSOR, next_cursor)?;
        }
        let invalidated = summaries::touched(&counts.summarised, flows.iter().map(end_ns));
        summaries::invalidate(&txn, &invalidated)?;
        txn.commit()?;
        Ok((added_bytes, invalidated))
    }

    /// Deletes the oldest records beyond the age or size bound; returns how many went.
    pub fn enforce_retention(&self, now: SystemTime) -> Result<u64, StoreError> {
        let mut counts = self
            .counts
            .lock()
            .map_err(|_| StoreError::Database("counter lock poisoned".into()))?;
        if self.write_failure().is_some() {
            // The next append reopens the history; retention waits for that.
            return Ok(0);
        }
        let oldest_allowed = now
            .checked_sub(self.retention.max_age)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        match self
            .with_db(|db| self.remove_oldest(db, counts.bytes, oldest_allowed, &counts.summarised))
        {
            Ok((removed, bytes, invalidated)) => {
                for period in invalidated {
                    counts.summarised.remove(&period);
                }
                counts.bytes = bytes;
                counts.records = counts.records.saturating_sub(removed);
                self.published.publish(&counts);
                Ok(removed)
            }
            Err(err) => {
                self.note_failure(&err);
                if let Err(reopen) = self.reopen(&mut counts) {
                    tracing::debug!(error = %reopen, "reopening the history after a failed retention");
                }
                Err(err)
            }
        }
    }

    /// One transaction removing the oldest records beyond the bounds; returns how many went,
    /// the record bytes left and the periods whose summaries it deleted.
    fn remove_oldest(
        &self,
        db: &Database,
        mut bytes: u64,
        oldest_allowed: u64,
        summarised: &BTreeSet<Period>,
    ) -> Result<(u64, u64, Vec<Period>), StoreError> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let mut removed = 0u64;
        let mut removed_ends = Vec::new();
        {
            let mut records = txn.open_table(RECORDS)?;
            let mut by_end = txn.open_table(BY_END_TIME)?;
            let mut not_forwarded = txn.open_table(NOT_FORWARDED)?;
            loop {
                let Some((cursor, encoded_len, end)) = records.first()?.map(|(k, v)| {
                    (
                        k.value(),
                        v.value().len() as u64,
                        decode_flow(k.value(), v.value()).map(|flow| end_ns(&flow)),
                    )
                }) else {
                    break;
                };
                let end = match end {
                    Ok(end) => end,
                    Err(err) => {
                        // One damaged record must not stop retention for good: it goes first.
                        // Its index entries stay behind; readers skip cursors with no record.
                        tracing::warn!(cursor, error = %err, "removing an undecodable record");
                        records.remove(cursor)?;
                        bytes = bytes.saturating_sub(encoded_len);
                        removed += 1;
                        continue;
                    }
                };
                if bytes <= self.retention.max_bytes && end >= oldest_allowed {
                    break;
                }
                records.remove(cursor)?;
                by_end.remove((end, cursor))?;
                not_forwarded.remove((end, cursor))?;
                bytes = bytes.saturating_sub(encoded_len);
                removed += 1;
                removed_ends.push(end);
            }
            let mut meta = txn.open_table(META)?;
            meta.insert(META_BYTES, bytes)?;
            meta.insert(META_SUMMARIES_BYTES, bytes)?;
        }
        let invalidated = summaries::touched(summarised, removed_ends.into_iter());
        summaries::invalidate(&txn, &invalidated)?;
        txn.commit()?;
        Ok((removed, bytes, invalidated))
    }

    /// Stores `summary` for the minute `period` if it covers exactly the records of that
    /// minute held now (`records` of them); returns whether it was stored. A history that
    /// changed since the caller folded the minute (a record it did not see, one removed)
    /// refuses it.
    pub fn put_summary(
        &self,
        period: Period,
        records: u64,
        summary: &[u8],
    ) -> Result<bool, StoreError> {
        if period.level() != 0 {
            return Ok(false);
        }
        self.store_summary(period, |txn| {
            let span = period.span();
            let by_end = txn.open_table(BY_END_TIME)?;
            let mut held = 0u64;
            for entry in by_end.range((span.start, 0)..(span.end, 0))? {
                entry?;
                held += 1;
            }
            Ok((held == records).then(|| summary.to_vec()))
        })
    }

    /// Stores a summary of the coarser `period` made by `combine` from the stored summaries of
    /// all its parts, in one transaction, so it covers exactly what they cover; returns
    /// whether it was stored (not when a part has none, or `combine` gives none).
    pub fn combine_summaries(
        &self,
        period: Period,
        combine: impl FnOnce(&[Vec<u8>]) -> Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let parts = period.parts();
        if parts.is_empty() {
            return Ok(false);
        }
        self.store_summary(period, |txn| {
            let table = txn.open_table(SUMMARIES)?;
            let mut summaries = Vec::with_capacity(parts.len());
            for part in &parts {
                match table.get(part.key())? {
                    Some(summary) => summaries.push(summary.value().to_vec()),
                    None => return Ok(None),
                }
            }
            Ok(combine(&summaries))
        })
    }

    /// In one write transaction, stores for `period` the summary `make` gives (none: nothing).
    fn store_summary(
        &self,
        period: Period,
        make: impl FnOnce(&redb::WriteTransaction) -> Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<bool, StoreError> {
        let mut counts = self
            .counts
            .lock()
            .map_err(|_| StoreError::Database("counter lock poisoned".into()))?;
        if self.write_failure().is_some() {
            return Ok(false);
        }
        let stored = self.with_db(|db| {
            let txn = db.begin_write()?;
            let Some(summary) = make(&txn)? else {
                txn.abort()?;
                return Ok(false);
            };
            txn.open_table(SUMMARIES)?
                .insert(period.key(), summary.as_slice())?;
            txn.commit()?;
            Ok(true)
        })?;
        if stored {
            counts.summarised.insert(period);
        }
        Ok(stored)
    }

    /// Every period that has a summary, ascending by level, then time.
    pub fn summarised_periods(&self) -> Result<Vec<Period>, StoreError> {
        let counts = self
            .counts
            .lock()
            .map_err(|_| StoreError::Database("counter lock poisoned".into()))?;
        Ok(counts.summarised.iter().copied().collect())
    }

    /// Covers end times [since_ns, until_ns) with the stored summaries, coarsest first, in one
    /// read transaction: `visit` is given each (false: it cannot use it, finer ones are tried),
    /// and the ranges no summary covers are returned, ascending, to be read record by record.
    pub fn visit_summaries(
        &self,
        since_ns: u64,
        until_ns: u64,
        mut visit: impl FnMut(Period, &[u8]) -> bool,
    ) -> Result<Vec<std::ops::Range<u64>>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(SUMMARIES)?;
            summaries::cover(&table, since_ns, until_ns, &mut visit)
        })
    }

    /// Visits up to `PAGE` stored flows of `range`, in its order, starting after `resume` (the
    /// position returned by the previous page). Returns where the next page starts, or `None`
    /// when the range is exhausted.
    pub fn page(
        &self,
        range: Range,
        resume: Option<(u64, u64)>,
        mut visit: impl FnMut(pb::Flow) -> ControlFlow<()>,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let records = txn.open_table(RECORDS)?;
            let decode = |cursor: u64| -> Result<Option<pb::Flow>, StoreError> {
                match records.get(cursor)? {
                    Some(v) => decode_flow(cursor, v.value()).map(Some),
                    None => Ok(None), // removed by retention meanwhile
                }
            };
            let mut seen = 0;
            match range {
                Range::AfterCursor(after) => {
                    let start = resume.map(|(_, c)| c).unwrap_or(after).saturating_add(1);
                    for entry in records.range(start..)? {
                        let (k, v) = entry?;
                        let cursor = k.value();
                        let flow = decode_flow(cursor, v.value())?;
                        seen += 1;
                        if visit(flow).is_break() || seen == PAGE {
                            return Ok(Some((0, cursor)));
                        }
                    }
                }
                Range::EndTime { since_ns, until_ns }
                | Range::NotForwarded { since_ns, until_ns } => {
                    let index = txn.open_table(if matches!(range, Range::EndTime { .. }) {
                        BY_END_TIME
                    } else {
                        NOT_FORWARDED
                    })?;
                    let start = match resume {
                        Some((end, cursor)) => (end, cursor.saturating_add(1)),
                        None => (since_ns, 0),
                    };
                    for entry in index.range(start..(until_ns, 0))? {
                        let (k, _) = entry?;
                        let (end, cursor) = k.value();
                        seen += 1;
                        if let Some(flow) = decode(cursor)? {
                            if visit(flow).is_break() {
                                return Ok(Some((end, cursor)));
                            }
                        }
                        if seen == PAGE {
                            return Ok(Some((end, cursor)));
                        }
                    }
                }
            }
            Ok(None)
        })
    }

    /// Visits every stored flow of `range` in its order, a page per read transaction, so a
    /// long range never holds the database or memory for all of it at once.
    pub fn visit(&self, range: Range, mut visit: impl FnMut(pb::Flow)) -> Result<(), StoreError> {
        let mut resume = None;
        loop {
            resume = self.page(range, resume, |flow| {
                visit(flow);
                ControlFlow::Continue(())
            })?;
            if resume.is_none() {
                return Ok(());
            }
        }
    }

    /// The cursor where the newest `limit` flows up to cursor `upto` begin, counting only those
    /// `keep` accepts (`None` keeps all, without decoding). `None` when none is kept. A replay of
    /// `last` then pages forward from there, so its memory is a page whatever `limit` is.
    pub fn last_start(
        &self,
        limit: usize,
        upto: u64,
        mut keep: Option<impl FnMut(&pb::Flow) -> bool>,
    ) -> Result<Option<u64>, StoreError> {
        if limit == 0 {
            return Ok(None);
        }
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let records = txn.open_table(RECORDS)?;
            let mut kept = 0;
            let mut start = None;
            for entry in records.range(..=upto)?.rev() {
                let (k, v) = entry?;
                let counts = match keep.as_mut() {
                    None => true,
                    Some(keep) => keep(&decode_flow(k.value(), v.value())?),
                };
                if counts {
                    kept += 1;
                    start = Some(k.value());
                    if kept == limit {
                        break;
                    }
                }
            }
            Ok(start)
        })
    }

    /// First and last cursor held, or `None` when empty.
    pub fn bounds(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let records = txn.open_table(RECORDS)?;
            let first = records.first()?.map(|(k, _)| k.value());
            let last = records.last()?.map(|(k, _)| k.value());
            Ok(first.zip(last))
        })
    }

    /// The cursor the next record will get, minus one: everything up to here is stored.
    pub fn last_cursor(&self) -> u64 {
        self.published
            .next_cursor
            .load(AtomicOrdering::Acquire)
            .saturating_sub(1)
    }

    pub fn len(&self) -> u64 {
        self.published.records.load(AtomicOrdering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The damaged history this store replaced at open, if it did.
    pub fn moved_aside(&self) -> Option<&Path> {
        self.moved_aside.as_deref()
    }

    pub fn record_bytes(&self) -> u64 {
        self.published.bytes.load(AtomicOrdering::Acquire)
    }

    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

/// Whether redb refused the file for its content (not for access, a lock or an old format,
/// which moving it aside would not cure or would lose).
fn is_damaged(err: &redb::DatabaseError) -> bool {
    match err {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::InvalidData
        }
        _ => false,
    }
}

/// How many leading `flows` a write reported as failed had in fact committed: each kept the
/// cursor that write gave it, and the history's next cursor is now past it. Cursors are given
/// to offered flows in order and never reused, so no other record can hold those cursors.
fn landed(flows: &[pb::Flow], next_cursor: u64) -> usize {
    let count = flows
        .iter()
        .take_while(|flow| flow.cursor != 0 && flow.cursor < next_cursor)
        .count();
    if count > 0 {
        tracing::warn!(
            records = count,
            "a history write reported as failed had reached the disk; not storing it twice"
        );
    }
    count
}

/// `flows.redb.damaged-<unix seconds>` beside the file.
fn aside_name(path: &Path) -> PathBuf {
    let seconds = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".damaged-{seconds}"));
    PathBuf::from(name)
}

/// A stored record, or an error naming its cursor.
fn decode_flow(cursor: u64, bytes: &[u8]) -> Result<pb::Flow, StoreError> {
    pb::Flow::decode(bytes).map_err(|source| StoreError::Decode { cursor, source })
}

#[cfg(test)]
mod tests;
