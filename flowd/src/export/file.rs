//! JSON-lines file sink with size-based rotation (`flows.jsonl`, `flows.jsonl.1`, ...).
//!
//! The sink follows the store like any subscriber. When it falls behind it does not lose records:
//! it resumes from the store after the last cursor it wrote (records are lost only if retention
//! removed them first, and then it writes a `lostRecords` line saying how many). That cursor is
//! also kept beside the file (`flows.jsonl.cursor`), so after a restart the sink continues where
//! it stopped: at least once, with duplicates only of what was written after the last save.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::cursor::CursorFile;
use crate::{
    query::FlowMatcher,
    store::{Backlog, Hub, Range, SubscriptionEvent},
    telemetry::{Counter, Telemetry},
};

#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("export file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    max_files: usize,
    file: File,
    written: u64,
    /// One record's line, reused.
    line: Vec<u8>,
}

impl FileSink {
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> Result<Self, FileSinkError> {
        let io = |source| FileSinkError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let written = file.metadata().map_err(io)?.len();
        Ok(Self {
            path: path.to_owned(),
            max_bytes,
            max_files,
            file,
            written,
            line: Vec::new(),
        })
    }

    fn io(&self, source: std::io::Error) -> FileSinkError {
        FileSinkError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn rotated(&self, index: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }

    /// Shifts `path.N-1` to `path.N` (dropping the oldest) and starts an empty file.
    fn rotate(&mut self) -> Result<(), FileSinkError> {
        // The current file may be gone (an operator or logrotate removed it): then there is
        // nothing to shift, and rotation only starts a new file.
        let gone = |result: std::io::Result<()>| match result {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        if self.max_files == 0 {
            gone(std::fs::remove_file(&self.path)).map_err(|e| self.io(e))?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.max_files));
            for index in (1..self.max_files).rev() {
                let from = self.rotated(index);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(index + 1)).map_err(|e| self.io(e))?;
                }
            }
            gone(std::fs::rename(&self.path, self.rotated(1))).map_err(|e| self.io(e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        self.file = file;
        self.written = 0;
        Ok(())
    }

    /// Appends one line in one write; when that fails (a full disk), whatever part of it
    /// reached the file is cut off again, so a retry never leaves half a record behind.
    pub fn write_line(&mut self, line: &str) -> Result<(), FileSinkError> {
        let len = line.len() as u64 + 1;
        if self.written > 0 && self.written + len > self.max_bytes {
            self.rotate()?;
        }
        self.line.clear();
        self.line.extend_from_slice(line.as_bytes());
        self.line.push(b'\n');
        if let Err(err) = self.file.write_all(&self.line) {
            let _ = self.file.set_len(self.written);
            return Err(self.io(err));
        }
        self.written += len;
        Ok(())
    }

    /// Whether the file being written is still the one at `path`; when it was removed or
    /// replaced (by an operator, logrotate), starts writing a new file there and says so.
    pub fn reopen_if_moved(&mut self) -> Result<bool, FileSinkError> {
        use std::os::unix::fs::MetadataExt as _;
        let open = self.file.metadata().map_err(|e| self.io(e))?;
        let moved = match std::fs::metadata(&self.path) {
            Ok(current) => (current.dev(), current.ino()) != (open.dev(), open.ino()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => true,
            Err(err) => return Err(self.io(err)),
        };
        if moved {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| self.io(e))?;
            self.written = file.metadata().map_err(|e| self.io(e))?.len();
            self.file = file;
        }
        Ok(moved)
    }

    fn cursor(&self) -> CursorFile {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".cursor");
        CursorFile::new(PathBuf::from(name))
    }

    /// The cursor of the last record written before the agent last stopped, if any.
    pub fn saved_cursor(&self) -> Option<u64> {
        self.cursor().load()
    }

    /// Records `cursor` as written, replacing the saved one in one rename.
    fn save_cursor(&self, cursor: u64) -> Result<(), FileSinkError> {
        let file = self.cursor();
        file.save(cursor).map_err(|source| FileSinkError::Io {
            path: file.path().to_owned(),
            source,
        })
    }
}

/// How often the sink saves its cursor: what a crash may export twice.
const SAVE_EVERY_RECORDS: u64 = 1024;
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// How long the sink waits before retrying a file or history that failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Copies every new record into the sink until the store closes. Nothing the store holds is
/// skipped: after a failed write, an unreadable history or a removed file, the sink waits and
/// resumes from the last record known to be in the file.
pub async fn run(mut sink: FileSink, hub: Hub, telemetry: Arc<Telemetry>) {
    // A cursor past the history's end belongs to a history since replaced (moved aside when
    // damaged): the new one is exported from its start.
    let saved = sink.saved_cursor().map(|cursor| {
        let last = hub.store().last_cursor();
        if cursor > last {
            tracing::warn!(saved_cursor = cursor, last_cursor = last, "the saved export cursor is past the end of the history, which is a new one; exporting all of it");
            0
        } else {
            cursor
        }
    });
    let follow_from = |after: Option<u64>| {
        // A first export starts with what comes next; a restarted one where it stopped.
        let backlog = after.map_or(Backlog::None, |after| {
            Backlog::Range(Range::AfterCursor(after))
        });
        hub.subscribe(backlog, true, FlowMatcher::all())
    };
    let mut subscription = follow_from(saved);
    let mut last_written = saved;
    // The last cursor known to be in the file at `path`: what went to a file that was removed
    // since is written again to the new one.
    let mut in_place = saved;
    let mut unsaved = 0u64;
    let mut saved_at = Instant::now();
    let mut failing = false;
    while let Some(event) = subscription.next().await {
        let flow = match event {
            Ok(SubscriptionEvent::Flow(flow)) => flow,
            // Not asked for; a file has no use for them.
            Ok(SubscriptionEvent::Watermark(_)) => continue,
            Ok(SubscriptionEvent::Lost { resume_after, .. }) => {
                // Fell behind: take the missed records from the store instead.
                subscription = follow_from(Some(last_written.unwrap_or(resume_after)));
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "export sink cannot read the history; retrying");
                if hub.wait_unless_closed(RETRY_AFTER).await.is_break() {
                    break;
                }
                subscription = follow_from(last_written);
                continue;
            }
        };
        let line = match crate::proto::flow_json(&flow) {
            Ok(line) => line,
            Err(err) => {
                tracing::error!(cursor = flow.cursor, error = %err, "encoding a record for export");
                continue;
            }
        };
        if let Err(err) = sink.write_line(&line) {
            // Nothing of the line stays in the file; the record is written again on retry.
            if !failing {
                tracing::error!(error = %err, "export file write failed; retrying from the store");
                failing = true;
            }
            telemetry.add_counter(Counter::ExportFileWriteErrors, 1);
            if hub.wait_unless_closed(RETRY_AFTER).await.is_break() {
                break;
            }
            subscription = follow_from(last_written);
            continue;
        }
        if failing {
            tracing::warn!("export file written again");
            failing = false;
        }
        last_written = Some(flow.cursor);
        in_place.get_or_insert(flow.cursor.saturating_sub(1));
        unsaved += 1;
        if unsaved >= SAVE_EVERY_RECORDS || saved_at.elapsed() >= SAVE_EVERY {
            match sink.reopen_if_moved() {
                Ok(false) => in_place = last_written,
                Ok(true) => {
                    tracing::warn!(path = %sink.path.display(), "the export file was removed or replaced; writing a new one from the last record known to be in it");
                    last_written = in_place;
                    subscription = follow_from(in_place);
                    continue;
                }
                Err(err) => tracing::warn!(error = %err, "checking the export file"),
            }
            save(&sink, last_written);
            unsaved = 0;
            saved_at = Instant::now();
        }
    }
    save(&sink, last_written);
}

fn save(sink: &FileSink, cursor: Option<u64>) {
    if let Some(cursor) = cursor {
        if let Err(err) = sink.save_cursor(cursor) {
            // The export goes on; a restart would then repeat more of it.
            tracing::warn!(error = %err, "saving the export cursor");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.jsonl");
        let mut sink = FileSink::open(&path, 25, 2).unwrap();
        for i in 0..10 {
            sink.write_line(&format!("{{\"n\":{i:04}}}")).unwrap();
        }
        // Each line is 13 bytes: two per file.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "{\"n\":0008}\n{\"n\":0009}\n");
        assert_eq!(
            read(&dir.path().join("flows.jsonl.1")),
            "{\"n\":0006}\n{\"n\":0007}\n"
        );
        assert_eq!(
            read(&dir.path().join("flows.jsonl.2")),
            "{\"n\":0004}\n{\"n\":0005}\n"
        );
        assert!(!dir.path().join("flows.jsonl.3").exists());
    }

    #[test]
    fn a_removed_file_does_not_stop_the_export() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.jsonl");
        for max_files in [0, 2] {
            let mut sink = FileSink::open(&path, 25, max_files).unwrap();
            sink.write_line("{\"n\":0001}").unwrap();
            std::fs::remove_file(&path).unwrap();
            for i in 2..5 {
                sink.write_line(&format!("{{\"n\":{i:04}}}"))
                    .unwrap_or_else(|err| panic!("max_files {max_files}: line {i}: {err}"));
            }
            // Lines are 11 bytes, two to a file: line 2 went to the removed file, line 3 found
            // the size reached and started a new one.
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                "{\"n\":0003}\n{\"n\":0004}\n",
                "max_files {max_files}: rotation started a new file"
            );
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[tokio::test]
    async fn a_restarted_sink_exports_what_was_stored_while_it_was_down_exactly_once() {
        use crate::{model::FlowRecord, store::FlowStore, store::Retention};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            FlowStore::open(
                &dir.path().join("flows.redb"),
                Retention {
                    max_age: Duration::from_secs(3600),
                    max_bytes: u64::MAX,
                },
                1 << 20,
            )
            .unwrap(),
        );
        let telemetry = Arc::new(Telemetry::new("n", 1));
        let path = dir.path().join("flows.jsonl");
        let lines = || {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .count()
        };
        let records =
            |ports: std::ops::RangeInclusive<u16>| ports.map(FlowRecord::sample).collect();
        // First run: three records exported, then the agent stops.
        let hub = Hub::new(store.clone(), 16);
        let sink = FileSink::open(&path, 1 << 20, 1).unwrap();
        let task = tokio::spawn(run(sink, hub.clone(), telemetry.clone()));
        hub.publish(records(1..=3), &telemetry).await;
        while lines() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        hub.close();
        task.await.unwrap();
        // Stored while no sink ran.
        let hub = Hub::new(store.clone(), 16);
        hub.publish(records(4..=5), &telemetry).await;
        let sink = FileSink::open(&path, 1 << 20, 1).unwrap();
        let task = tokio::spawn(run(sink, hub.clone(), telemetry.clone()));
        let caught_up = tokio::time::timeout(Duration::from_secs(10), async {
            while lines() < 5 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            caught_up.is_ok(),
            "the records stored while no sink ran were not exported"
        );
        hub.close();
        task.await.unwrap();
        assert_eq!(exported_cursors(&path), [1, 2, 3, 4, 5]);
    }

    fn exported_cursors(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["cursor"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_removed_export_file_is_recreated_with_what_went_to_the_removed_one() {
        use crate::{model::FlowRecord, store::FlowStore, store::Retention};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            FlowStore::open(
                &dir.path().join("flows.redb"),
                Retention {
                    max_age: Duration::MAX,
                    max_bytes: u64::MAX,
                },
                1 << 20,
            )
            .unwrap(),
        );
        let telemetry = Arc::new(Telemetry::new("n", 1));
        let path = dir.path().join("flows.jsonl");
        let hub = Hub::new(store, 1 << 12);
        let sink = FileSink::open(&path, 1 << 30, 1).unwrap();
        let task = tokio::spawn(run(sink, hub.clone(), telemetry.clone()));
        hub.publish((1..=3).map(FlowRecord::sample).collect(), &telemetry)
            .await;
        let wait = |count: usize| {
            let path = path.clone();
            async move {
                let done = tokio::time::timeout(Duration::from_secs(20), async {
                    while exported_cursors(&path).len() < count {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
                .await;
                assert!(
                    done.is_ok(),
                    "{} of {count} lines",
                    exported_cursors(&path).len()
                );
            }
        };
        wait(3).await;
        std::fs::remove_file(&path).unwrap();
        // Enough records for the sink's next check of its file.
        let more = SAVE_EVERY_RECORDS as u16 + 100;
        hub.publish((4..4 + more).map(FlowRecord::sample).collect(), &telemetry)
            .await;
        let total = 3 + u64::from(more);
        wait(total as usize).await;
        hub.close();
        task.await.unwrap();
        assert_eq!(exported_cursors(&path), (1..=total).collect::<Vec<_>>());
        assert!(telemetry.lost(false).is_empty());
    }

    #[test]
    fn reopening_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.jsonl");
        let mut sink = FileSink::open(&path, 1 << 20, 1).unwrap();
        sink.write_line("a").unwrap();
        drop(sink);
        let mut sink = FileSink::open(&path, 1 << 20, 1).unwrap();
        sink.write_line("b").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
    }

    #[test]
    fn unwritable_path_is_named() {
        let err = FileSink::open(Path::new("/proc/flowd/flows.jsonl"), 1, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/proc/flowd"), "{err}");
    }
}
