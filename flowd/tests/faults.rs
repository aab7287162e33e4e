//! I/O faults injected for real: the history on a filesystem that fills up.

mod support;

use std::{
    io::Write as _,
    path::Path,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use flowd::{
    export::FileSink,
    model::FlowRecord,
    query::FlowMatcher,
    store::{self, Backlog, FlowStore, Hub, Range, Retention, StoreStage, SubscriptionEvent},
    telemetry::Telemetry,
};
use tokio::sync::mpsc;

/// A tmpfs of `bytes` mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={bytes}").as_str()),
        )
        .expect("mount a tmpfs");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) -> std::path::PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create filler");
        let block = vec![0u8; 64 << 10];
        loop {
            if let Err(err) = file.write_all(&block).and_then(|()| file.sync_all()) {
                assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC), "{err}");
                break;
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn batch(first: u16, count: u16) -> Vec<FlowRecord> {
    (0..count)
        .map(|i| FlowRecord::sample(first.wrapping_add(i)))
        .collect()
}

/// Polls `done` (which says what it saw when not done) until it passes.
async fn wait_for(what: &str, mut done: impl FnMut() -> Result<(), String>) {
    let mut seen = String::new();
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match done() {
                Ok(()) => break,
                Err(now) => seen = now,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_delays_the_history_and_loses_nothing() {
    if !support::privileged("a_full_disk_delays_the_history_and_loses_nothing") {
        return;
    }
    let disk = SmallDisk::mount(4 << 20);
    let path = disk.path().join("flows.redb");
    // Sample records end in 1970: no age bound, or retention would take them all.
    let retention = Retention {
        max_age: Duration::MAX,
        max_bytes: u64::MAX,
    };
    let store = Arc::new(FlowStore::open(&path, retention, 1 << 20).expect("open history"));
    let telemetry = Arc::new(Telemetry::new("n", 1));
    let hub = Hub::new(store.clone(), 1 << 16);
    let mut follower = hub.subscribe(Backlog::None, true, FlowMatcher::all());
    let (batches, input) = mpsc::channel(4);
    let stage = tokio::spawn(store::run(
        StoreStage {
            hub: hub.clone(),
            telemetry: telemetry.clone(),
            hold_records: 1 << 20,
            watermark_interval: std::time::Duration::from_secs(1),
        },
        input,
    ));

    batches.send(batch(1, 100)).await.unwrap();
    // What a wait saw, for its failure message.
    let progress = |sent: u64, done: bool| {
        let held = telemetry.history_held.load(Ordering::Relaxed);
        match done {
            true => Ok(()),
            false => Err(format!("{} stored, {held} held, {sent} sent", store.len())),
        }
    };
    wait_for("the first batch is stored", || {
        progress(100, store.len() == 100)
    })
    .await;
    let filler = disk.fill();

    // Keep sending until the history refuses a write: redb may still have free pages.
    let mut sent: u64 = 100;
    let mut port = 101u16;
    while store.write_failure().is_none() {
        assert!(
            sent < 60_000,
            "the history never failed on a full filesystem"
        );
        batches.send(batch(port, 200)).await.unwrap();
        port = port.wrapping_add(200);
        sent += 200;
        tokio::task::yield_now().await;
    }
    let failure = store.write_failure().expect("failing");
    assert!(
        failure.error.contains(&path.display().to_string()) || failure.error.contains("space"),
        "the error names the file or the cause: {}",
        failure.error
    );
    // Capture goes on: more batches are taken (and held) while the disk stays full.
    for _ in 0..3 {
        batches.send(batch(port, 200)).await.unwrap();
        port = port.wrapping_add(200);
        sent += 200;
    }
    wait_for("every record not stored is held in memory", || {
        let held = telemetry.history_held.load(Ordering::Relaxed);
        progress(sent, held + store.len() == sent)
    })
    .await;
    assert!(store.write_failure().is_some());
    // Reading needs the file reopened, and redb's recovery at open needs space: until then a
    // reader is told why, by name.
    if let Err(err) = store.bounds() {
        assert!(err.to_string().contains("Free space"), "{err}");
    }

    std::fs::remove_file(filler).unwrap();
    // The stage retries on its own (housekeeping) without new traffic.
    wait_for("the held records are stored", || {
        let held = telemetry.history_held.load(Ordering::Relaxed);
        progress(sent, store.len() == sent && held == 0)
    })
    .await;
    assert!(store.write_failure().is_none(), "recovered");
    assert!(
        telemetry.lost(false).is_empty(),
        "{:?}",
        telemetry.lost(false)
    );

    // The follower got every record once, in cursor order, across the failure.
    for expected in 1..=sent {
        let event = tokio::time::timeout(Duration::from_secs(10), follower.next())
            .await
            .expect("follower delivery")
            .expect("follower open")
            .expect("follower event");
        match event {
            SubscriptionEvent::Flow(flow) => assert_eq!(flow.cursor, expected),
            lost => panic!("follower lost records: {lost:?}"),
        }
    }
    drop(batches);
    stage.await.unwrap();

    // Nothing stored is damaged: a fresh open reads every record, cursors 1..=sent.
    drop(follower);
    drop(hub);
    drop(store);
    let reopened = FlowStore::open(&path, retention, 1 << 20).expect("reopen");
    assert!(reopened.moved_aside().is_none());
    let mut cursors = Vec::new();
    let mut resume = None;
    loop {
        resume = reopened
            .page(Range::AfterCursor(0), resume, |flow| {
                cursors.push(flow.cursor);
                std::ops::ControlFlow::Continue(())
            })
            .expect("every stored record decodes");
        if resume.is_none() {
            break;
        }
    }
    assert_eq!(cursors, (1..=sent).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_delays_the_export_file_and_leaves_no_half_line() {
    if !support::privileged("a_full_disk_delays_the_export_file_and_leaves_no_half_line") {
        return;
    }
    let history = tempfile::tempdir().unwrap();
    let store = Arc::new(
        FlowStore::open(
            &history.path().join("flows.redb"),
            Retention {
                max_age: Duration::MAX,
                max_bytes: u64::MAX,
            },
            1 << 20,
        )
        .unwrap(),
    );
    let telemetry = Arc::new(Telemetry::new("n", 1));
    let hub = Hub::new(store.clone(), 1 << 16);
    let disk = SmallDisk::mount(4 << 20);
    let path = disk.path().join("flows.jsonl");
    let sink = FileSink::open(&path, u64::MAX, 1).unwrap();
    let task = tokio::spawn(flowd::export::run_file_sink(
        sink,
        hub.clone(),
        telemetry.clone(),
    ));
    let exported = || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .map(|line| {
                let flow: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("a broken line in the export: {err}: {line:?}"));
                flow["cursor"].as_str().unwrap().parse::<u64>().unwrap()
            })
            .collect::<Vec<_>>()
    };
    // A first export follows from what comes next: publish once it follows.
    wait_for("the file sink follows the history", || {
        match hub.followers() {
            0 => Err("no follower".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    hub.publish(batch(1, 10), &telemetry).await;
    wait_for("the first records are exported", || {
        let n = exported().len();
        if n == 10 {
            Ok(())
        } else {
            Err(format!("{n} lines"))
        }
    })
    .await;
    let filler = disk.fill();
    // Each line is some hundred bytes: these cannot all fit in what the filler left.
    for first in (11..3011).step_by(500) {
        hub.publish(batch(first, 500), &telemetry).await;
    }
    let write_errors = || {
        telemetry
            .counters()
            .get("export_file_write_errors")
            .copied()
            .unwrap_or(0)
    };
    wait_for("the export reports failed writes", || {
        let errors = write_errors();
        if errors > 0 {
            Ok(())
        } else {
            Err(format!("{} lines", exported().len()))
        }
    })
    .await;
    std::fs::remove_file(filler).unwrap();
    wait_for("everything stored is exported", || {
        let n = exported().len();
        if n == 3010 {
            Ok(())
        } else {
            Err(format!("{n} lines"))
        }
    })
    .await;
    hub.close();
    task.await.unwrap();
    assert_eq!(exported(), (1..=3010).collect::<Vec<u64>>());
    assert!(
        telemetry.lost(false).is_empty(),
        "{:?}",
        telemetry.lost(false)
    );
}

#[test]
fn pinned_state_has_one_owner_and_one_layout() {
    use flowd::capture::{pins::PinDir, MapSizes};
    if !support::privileged("pinned_state_has_one_owner_and_one_layout") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pins = support::PinPath::within(dir.path());
    let sizes = |flow_entries| MapSizes {
        flow_entries,
        ring_buffer_bytes: 1 << 16,
    };
    let first = PinDir::open(&pins.0, sizes(1024)).expect("mounts and opens");
    std::fs::write(first.map_path("FLOWS"), b"").expect_err("bpffs takes no plain files");
    let second = PinDir::open(&pins.0, sizes(1024)).expect_err("a second agent is refused");
    assert!(
        second
            .to_string()
            .contains("another flowd agent uses pinPath"),
        "{second}"
    );
    let layouts = || {
        std::fs::read_dir(&pins.0)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("layout-"))
            .collect::<Vec<_>>()
    };
    let old = layouts();
    assert_eq!(old.len(), 1);
    drop(first);
    // Other map sizes: the old layout goes, the new one is not an adoption.
    let other = PinDir::open(&pins.0, sizes(2048)).expect("opens after the first stopped");
    assert!(!other.adopted());
    let now = layouts();
    assert_eq!(now.len(), 1);
    assert_ne!(now, old);
}
