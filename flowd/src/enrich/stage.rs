//! The enrichment stage, and the file source that keeps the index current.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{cgroups::CgroupPods, load_paths, EndpointKind, MetadataIndex};
use crate::flow::FlowRecord;

/// Swapped whole on reload: lookups never see a half-built index.
pub type SharedIndex = Arc<RwLock<Arc<MetadataIndex>>>;

/// Records in, the same records with their endpoints named out. A local process's cgroup names
/// its pod when the address does not (host-network pods).
pub async fn run(
    index: SharedIndex,
    cgroups: Option<Arc<CgroupPods>>,
    mut input: mpsc::Receiver<Vec<FlowRecord>>,
    output: mpsc::Sender<Vec<FlowRecord>>,
) {
    while let Some(mut records) = input.recv().await {
        let current = index.read().map(|i| i.clone()).ok();
        if let Some(current) = current {
            let queries: Vec<_> = records
                .iter()
                .flat_map(|r| [(r.source.ip, r.start), (r.destination.ip, r.start)])
                .collect();
            let mut found = current.lookup_many(&queries).into_iter();
            for record in &mut records {
                record.source_meta = found.next();
                record.destination_meta = found.next();
                if let (Some(process), Some(cgroups)) = (&record.process, &cgroups) {
                    let local = if process.of_source {
                        &mut record.source_meta
                    } else {
                        &mut record.destination_meta
                    };
                    let named = local.as_ref().is_some_and(|m| m.kind == EndpointKind::Pod);
                    if !named {
                        if let Some(pod) = cgroups
                            .pod_uid(process.cgroup_id)
                            .and_then(|uid| current.pod_by_uid(&uid))
                        {
                            *local = Some(pod);
                        }
                    }
                }
            }
        }
        if output.send(records).await.is_err() {
            tracing::warn!("next stage stopped; enrichment exiting");
            return;
        }
    }
}

/// Loads `paths` into a finished index, logging every problem (which never stops the rest).
pub fn load(paths: &[PathBuf]) -> MetadataIndex {
    let (mut index, report) = load_paths(paths);
    for error in &report.errors {
        tracing::warn!(error = %error, "metadata object skipped");
    }
    index.finish();
    tracing::info!(
        objects = report.objects,
        pods = index.pods(),
        "metadata loaded"
    );
    index
}

fn newest_change(paths: &[PathBuf]) -> Option<SystemTime> {
    paths
        .iter()
        .flat_map(|path| {
            let mut times = vec![std::fs::metadata(path).and_then(|m| m.modified()).ok()];
            if path.is_dir() {
                if let Ok(entries) = std::fs::read_dir(path) {
                    times.extend(
                        entries
                            .filter_map(Result::ok)
                            .map(|e| e.metadata().and_then(|m| m.modified()).ok()),
                    );
                }
            }
            times
        })
        .flatten()
        .max()
}

/// Reloads the files when they change (a ConfigMap update, a new file in the directory).
pub async fn watch_files(
    paths: Vec<PathBuf>,
    index: SharedIndex,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut seen = newest_change(&paths);
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let changed = newest_change(&paths);
        if changed == seen {
            continue;
        }
        seen = changed;
        let paths = paths.clone();
        match tokio::task::spawn_blocking(move || load(&paths)).await {
            Ok(fresh) => {
                if let Ok(mut current) = index.write() {
                    *current = Arc::new(fresh);
                }
            }
            Err(err) => tracing::warn!(error = %err, "reloading metadata failed"),
        }
    }
}
