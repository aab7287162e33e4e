use std::time::UNIX_EPOCH;

use super::*;

fn flow(end_secs: i64, verdict: pb::Verdict) -> pb::Flow {
    pb::Flow {
        end_time: Some(pbjson_types::Timestamp {
            seconds: end_secs,
            nanos: 0,
        }),
        verdict: verdict as i32,
        source: Some(pb::Endpoint {
            ip: "198.18.0.1".into(),
            port: 40000,
            ..Default::default()
        }),
        ..Default::default()
    }
}

const FOREVER: Retention = Retention {
    max_age: Duration::from_secs(100 * 365 * 86400),
    max_bytes: u64::MAX,
};

fn open(dir: &tempfile::TempDir, retention: Retention) -> FlowStore {
    FlowStore::open(&dir.path().join("flows.redb"), retention, 1 << 20).unwrap()
}

fn collect(store: &FlowStore, range: Range) -> Vec<u64> {
    let mut cursors = Vec::new();
    let mut resume = None;
    loop {
        resume = store
            .page(range, resume, |f| {
                cursors.push(f.cursor);
                ControlFlow::Continue(())
            })
            .unwrap();
        if resume.is_none() {
            return cursors;
        }
    }
}

#[test]
fn cursors_survive_a_restart_and_keep_growing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir, FOREVER);
        let stored = store
            .append(vec![
                flow(1, pb::Verdict::Forwarded),
                flow(2, pb::Verdict::Forwarded),
            ])
            .unwrap();
        assert_eq!(stored.iter().map(|f| f.cursor).collect::<Vec<_>>(), [1, 2]);
    }
    let store = open(&dir, FOREVER);
    assert_eq!(store.len(), 2);
    assert_eq!(store.bounds().unwrap(), Some((1, 2)));
    let stored = store.append(vec![flow(3, pb::Verdict::Forwarded)]).unwrap();
    assert_eq!(stored[0].cursor, 3);
    assert_eq!(collect(&store, Range::AfterCursor(1)), [2, 3]);
    assert!(store.record_bytes() > 0);
}

#[test]
fn after_cursor_pages_through_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, FOREVER);
    let total = PAGE * 2 + 10;
    store
        .append(
            (0..total)
                .map(|i| flow(i as i64, pb::Verdict::Forwarded))
                .collect(),
        )
        .unwrap();
    let cursors = collect(&store, Range::AfterCursor(5));
    assert_eq!(cursors.len(), total - 5);
    assert!(cursors.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(cursors[0], 6);
}

#[test]
fn time_ranges_and_the_not_forwarded_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, FOREVER);
    store
        .append(vec![
            flow(10, pb::Verdict::Forwarded),
            flow(20, pb::Verdict::Dropped),
            flow(30, pb::Verdict::Forwarded),
            flow(40, pb::Verdict::Denied),
            flow(50, pb::Verdict::Dropped),
        ])
        .unwrap();
    let sec = 1_000_000_000;
    assert_eq!(
        collect(
            &store,
            Range::EndTime {
                since_ns: 20 * sec,
                until_ns: 50 * sec
            }
        ),
        [2, 3, 4]
    );
    assert_eq!(
        collect(
            &store,
            Range::NotForwarded {
                since_ns: 15 * sec,
                until_ns: u64::MAX
            }
        ),
        [2, 4, 5]
    );
}

#[test]
fn the_last_n_start_at_the_nth_newest_kept_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, FOREVER);
    store
        .append((1..=10).map(|i| flow(i, pb::Verdict::Forwarded)).collect())
        .unwrap();
    let even = |f: &pb::Flow| f.cursor.is_multiple_of(2);
    assert_eq!(store.last_start(3, u64::MAX, Some(even)).unwrap(), Some(6));
    let all = None::<fn(&pb::Flow) -> bool>;
    assert_eq!(store.last_start(2, 5, all).unwrap(), Some(4));
    assert_eq!(store.last_start(usize::MAX, 5, all).unwrap(), Some(1));
    assert_eq!(store.last_start(0, 5, all).unwrap(), None);
    let none = |_: &pb::Flow| false;
    assert_eq!(store.last_start(3, u64::MAX, Some(none)).unwrap(), None);
}

#[test]
fn cursors_never_go_back_after_retention_emptied_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let nothing_kept = Retention {
        max_age: FOREVER.max_age,
        max_bytes: 0,
    };
    {
        let store = open(&dir, nothing_kept);
        store
            .append((1..=3).map(|i| flow(i, pb::Verdict::Forwarded)).collect())
            .unwrap();
        assert_eq!(store.enforce_retention(SystemTime::now()).unwrap(), 3);
        assert_eq!(store.bounds().unwrap(), None);
    }
    let store = open(&dir, FOREVER);
    let stored = store.append(vec![flow(4, pb::Verdict::Forwarded)]).unwrap();
    assert_eq!(
        stored[0].cursor, 4,
        "a consumer resuming after 3 must see this one"
    );
}

#[test]
fn retention_drops_the_oldest_by_size_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    // As stored: with its cursor and the recorded time the store stamps.
    let one = pb::Flow {
        cursor: 1,
        recorded_time: Some(crate::flow::wire::timestamp(SystemTime::now())),
        ..flow(1, pb::Verdict::Forwarded)
    }
    .encoded_len() as u64;
    let store = open(
        &dir,
        Retention {
            max_age: FOREVER.max_age,
            max_bytes: one * 3 + one / 2,
        },
    );
    store
        .append((1..=6).map(|i| flow(i, pb::Verdict::Dropped)).collect())
        .unwrap();
    let removed = store.enforce_retention(SystemTime::now()).unwrap();
    assert_eq!(removed, 3);
    assert_eq!(store.bounds().unwrap(), Some((4, 6)));
    assert_eq!(
        collect(
            &store,
            Range::NotForwarded {
                since_ns: 0,
                until_ns: u64::MAX
            }
        ),
        [4, 5, 6],
        "indexes follow the records"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = open(
        &dir,
        Retention {
            max_age: Duration::from_secs(60),
            max_bytes: u64::MAX,
        },
    );
    store
        .append(vec![
            flow(100, pb::Verdict::Forwarded),
            flow(1000, pb::Verdict::Forwarded),
        ])
        .unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1030);
    assert_eq!(store.enforce_retention(now).unwrap(), 1);
    assert_eq!(store.bounds().unwrap(), Some((2, 2)));
}

#[test]
fn a_newer_schema_is_refused_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_SCHEMA, 99)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = FlowStore::open(&path, FOREVER, 1 << 20)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("newer flowd"), "{err}");
}

#[test]
fn an_unusable_path_is_named() {
    let err = FlowStore::open(Path::new("/proc/flowd/flows.redb"), FOREVER, 1 << 20)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/proc/flowd"), "{err}");
}

#[test]
fn an_undecodable_record_does_not_stop_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        // Field 1 announced as a 100-byte string with 2 bytes present: prost refuses it.
        let damaged: &[u8] = &[0x0a, 100, 1, 2];
        txn.open_table(RECORDS).unwrap().insert(1, damaged).unwrap();
        txn.commit().unwrap();
    }
    let store = FlowStore::open(&path, FOREVER, 1 << 20).unwrap();
    let stored = store
        .append(vec![
            flow(2, pb::Verdict::Forwarded),
            flow(3, pb::Verdict::Forwarded),
        ])
        .unwrap();
    assert_eq!(stored.iter().map(|f| f.cursor).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(store.enforce_retention(SystemTime::now()).unwrap(), 1);
    assert_eq!(collect(&store, Range::AfterCursor(0)), [2, 3]);
    assert_eq!(store.bounds().unwrap(), Some((2, 3)));
}

#[test]
fn readers_never_wait_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, FOREVER);
    store.append(vec![flow(1, pb::Verdict::Forwarded)]).unwrap();
    // A writer in the middle of its transaction (and its fsync) holds the counts.
    let writing = store.counts.lock().unwrap();
    let (done, seen) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let _ = done.send((store.last_cursor(), store.len(), store.record_bytes() > 0));
        });
        let read = seen.recv_timeout(std::time::Duration::from_secs(10));
        drop(writing);
        assert_eq!(
            read.expect("the reader finished while the writer held the lock"),
            (1, 1, true)
        );
    });
}

#[test]
fn a_damaged_history_is_moved_aside_and_a_new_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.redb");
    {
        let store = open(&dir, FOREVER);
        store
            .append((1..=50).map(|i| flow(i, pb::Verdict::Forwarded)).collect())
            .unwrap();
    }
    // Flip the file's first page, where redb keeps its header.
    let mut bytes = std::fs::read(&path).unwrap();
    for byte in bytes.iter_mut().take(4096) {
        *byte ^= 0xff;
    }
    std::fs::write(&path, &bytes).unwrap();
    let store = open(&dir, FOREVER);
    let aside = store
        .moved_aside()
        .expect("the damaged file was moved aside")
        .to_owned();
    assert!(
        aside
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("flows.redb.damaged-"),
        "{aside:?}"
    );
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        bytes,
        "kept as it was, for inspection"
    );
    assert_eq!(store.bounds().unwrap(), None);
    let stored = store.append(vec![flow(1, pb::Verdict::Forwarded)]).unwrap();
    assert_eq!(stored[0].cursor, 1);
}

#[test]
fn a_history_that_is_only_busy_is_not_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(&dir, FOREVER);
    let second = FlowStore::open(&dir.path().join("flows.redb"), FOREVER, 1 << 20);
    assert!(second.is_err(), "a second open of the same file fails");
    assert!(first.moved_aside().is_none());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
