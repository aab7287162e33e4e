//! The capture stage: one task owns the kernel maps, reads the ring buffer as it fills, sweeps
//! the flow map on a timer and sends record batches down the pipeline.

use std::{sync::Arc, time::Duration};

use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use flowd_common::{
    FlowEvent, FlowKey, FlowStats, ReportedCounts, COUNTER_COUNT, EVENT_FLOW_RESTART,
    EVENT_MAP_FULL,
};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    follow::{publish_interfaces, Following},
    Attachments, CaptureError, LinkEvent, LinkWatch, LoadedPrograms, Sweeper,
};
use crate::{
    model::{RawFlow, SharedInterfaces},
    telemetry::{Counter, EventKind, LostCause, Telemetry},
};

pub struct CaptureTask {
    pub programs: LoadedPrograms,
    pub attachments: Attachments,
    /// Link notifications of the attach namespace, to follow interfaces as they come and go.
    pub links: Option<LinkWatch>,
    /// Interface names to follow; empty follows every non-loopback interface.
    pub names: Vec<String>,
    pub interfaces: SharedInterfaces,
    pub sweeper: Sweeper,
    pub sweep_interval: Duration,
    pub telemetry: Arc<Telemetry>,
    /// Keep what was reported of each flow in the kernel's `REPORTED` map (with pinned maps,
    /// for the next agent), and take over what is there at start.
    pub keep_reported: bool,
}

async fn next_link(links: &mut Option<LinkWatch>) -> Option<LinkEvent> {
    match links {
        Some(links) => links.next().await,
        None => std::future::pending().await,
    }
}

/// Runs until `shutdown`, then detaches, drains what the kernel counted and sends it on, so a
/// stop never loses data already collected.
pub async fn run(
    task: CaptureTask,
    output: mpsc::Sender<Vec<RawFlow>>,
    shutdown: CancellationToken,
) -> Result<(), CaptureError> {
    let CaptureTask {
        programs,
        mut attachments,
        mut links,
        names,
        interfaces,
        mut sweeper,
        sweep_interval,
        telemetry,
        keep_reported,
    } = task;
    let LoadedPrograms {
        mut ebpf,
        drops,
        sockets,
        drop_names,
        mut flows,
        reported,
        events,
        counters,
        drop_reasons,
        mut peer_netns,
        logger,
    } = programs;
    let mut reported = keep_reported.then_some(reported);
    if let Some(previous) = &reported {
        let baselines: Vec<(FlowKey, ReportedCounts)> =
            previous.iter().filter_map(Result::ok).collect();
        if !baselines.is_empty() {
            tracing::info!(
                flows = baselines.len(),
                "took over what the previous agent reported"
            );
        }
        sweeper.adopt(baselines);
    }
    let counters = KernelCounters {
        counters,
        // Without a drop probe nothing writes these slots: no need to read them every sweep.
        drop_reasons: drops.is_some().then(|| DropReasonCounters {
            reasons: (0..flowd_common::DROP_REASON_SLOTS)
                .map(|reason| drop_names.reason(reason))
                .collect(),
            map: drop_reasons,
        }),
    };
    // SAFETY: the ring buffer owns its fd, which stays open until the AsyncFd drops.
    let mut events =
        unsafe { AsyncFd::register(events) }.map_err(|err| CaptureError::RingBuffer(err.into()))?;
    let mut logger = match logger {
        // SAFETY: as above, the logger owns its ring-buffer fd.
        Some(logger) => Some(
            unsafe { AsyncFd::register(logger) }
                .map_err(|err| CaptureError::RingBuffer(err.into()))?,
        ),
        None => None,
    };
    // The state link events change, borrowed afresh for each event.
    macro_rules! following {
        () => {
            Following {
                ebpf: &mut ebpf,
                attachments: &mut attachments,
                peer_netns: &mut peer_netns,
                names: &names,
                interfaces: &interfaces,
                telemetry: &telemetry,
            }
        };
    }
    // A full relist, when a complete list could be had; otherwise the next overrun or link
    // event brings another chance, and nothing is forgotten on a partial one.
    macro_rules! resync {
        ($watch:expr) => {
            match $watch.current().await {
                Some(current) => following!().resync(current),
                None => tracing::warn!("no complete link list; attachments kept as they are"),
            }
        };
    }
    publish_interfaces(&attachments, &interfaces, &telemetry);
    if let Some(links) = &links {
        // What appeared or went while attaching, and where each veth's far end is.
        resync!(links);
    }
    let mut ticker = tokio::time::interval(sweep_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            guard = events.readable_mut() => {
                let mut guard = guard.map_err(CaptureError::RingBuffer)?;
                drain_events(guard.get_inner_mut(), &mut sweeper, &telemetry);
                guard.clear_ready();
            }
            event = next_link(&mut links) => match event {
                Some(LinkEvent::Added { name, index, loopback, peer_netns: peer }) => {
                    following!().added(&name, index, loopback, peer);
                }
                Some(LinkEvent::Removed { index }) => following!().removed(index),
                Some(LinkEvent::Overrun) => {
                    tracing::warn!("link notifications were lost (rtnetlink overrun); listing the links again");
                    telemetry.add_counter(Counter::InterfaceResyncs, 1);
                    if let Some(watch) = &links {
                        resync!(watch);
                    }
                }
                None => {
                    // A new subscription first, then the list: nothing is missed in between.
                    let restarted = links.as_ref().map(LinkWatch::restart);
                    links = match restarted {
                        Some(Ok(watch)) => {
                            tracing::warn!("link notifications ended; subscribed again");
                            telemetry.add_counter(Counter::InterfaceResyncs, 1);
                            resync!(watch);
                            Some(watch)
                        }
                        Some(Err(err)) => {
                            tracing::error!(error = %err, "link notifications ended and cannot be restarted; new interfaces will not be followed");
                            None
                        }
                        None => None,
                    };
                }
            },
            guard = readable(&mut logger) => {
                if let Ok(mut guard) = guard {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
            _ = ticker.tick() => {
                // A restarted tuple's final counters must be taken before the map's new ones are
                // compared with what was reported for the old connection.
                drain_events(events.get_mut(), &mut sweeper, &telemetry);
                let batch = sweep(&mut flows, reported.as_mut(), &mut sweeper, &counters, &telemetry, false);
                if !batch.is_empty() && output.send(batch).await.is_err() {
                    tracing::warn!("flow stage stopped; capture exiting");
                    break;
                }
            }
        }
    }

    // Stop the kernel counting first, so the final sweep sees everything there will be.
    attachments.detach();
    if let Some(drops) = drops {
        drops.detach();
    }
    if let Some(sockets) = sockets {
        sockets.detach();
    }
    drain_events(events.get_mut(), &mut sweeper, &telemetry);
    let batch = sweep(
        &mut flows,
        reported.as_mut(),
        &mut sweeper,
        &counters,
        &telemetry,
        true,
    );
    let flushed = batch.len();
    if !batch.is_empty() && output.send(batch).await.is_err() {
        tracing::error!(records = flushed, "flow stage gone; final records lost");
    }
    tracing::info!(records = flushed, "capture stopped, counted flows flushed");
    drop(ebpf);
    Ok(())
}

async fn readable<T: std::os::fd::AsRawFd>(
    fd: &mut Option<AsyncFd<T>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, T>> {
    match fd {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

fn drain_events(ring: &mut RingBuf<MapData>, sweeper: &mut Sweeper, telemetry: &Telemetry) {
    let (mut overflowed, mut malformed, mut restarts) = (0u64, 0u64, 0u64);
    while let Some(item) = ring.next() {
        let Some(event) = decode_event(&item) else {
            malformed += 1;
            continue;
        };
        match event.kind {
            EVENT_MAP_FULL => {
                overflowed += 1;
                sweeper.add_overflow(event.key, event.stats);
            }
            EVENT_FLOW_RESTART => {
                restarts += 1;
                sweeper.add_restarted(event.key, event.stats);
            }
            _ => malformed += 1,
        }
    }
    for (kind, value) in [
        (EventKind::MapFull, overflowed),
        (EventKind::Malformed, malformed),
        (EventKind::Restart, restarts),
    ] {
        if value > 0 {
            telemetry.add_counter(Counter::Event(kind), value);
        }
    }
    let capped = sweeper.take_capped();
    if capped > 0 {
        telemetry.add_lost(LostCause::MapFullOverflowCapped, capped);
    }
}

/// One ring-buffer record as the kernel wrote it; `None` when it is too short to be one.
pub fn decode_event(bytes: &[u8]) -> Option<FlowEvent> {
    if bytes.len() < std::mem::size_of::<FlowEvent>() {
        return None;
    }
    // SAFETY: length checked; FlowEvent is plain data valid for any bit pattern.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<FlowEvent>()) })
}

fn sweep(
    flows: &mut HashMap<MapData, FlowKey, FlowStats>,
    reported: Option<&mut HashMap<MapData, FlowKey, ReportedCounts>>,
    sweeper: &mut Sweeper,
    counters: &KernelCounters,
    telemetry: &Telemetry,
    flush: bool,
) -> Vec<RawFlow> {
    let now_ns = crate::model::kernel_clock_ns();
    let entries: Vec<(FlowKey, FlowStats)> = flows.iter().filter_map(Result::ok).collect();
    telemetry
        .active_flows
        .store(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let outcome = sweeper.sweep(entries, now_ns, flush);
    for key in &outcome.evict {
        if let Err(err) = flows.remove(key) {
            tracing::debug!(error = %err, "evicting a flow that is already gone");
        }
    }
    if let Some(reported) = reported {
        keep_baselines(reported, &outcome);
    }
    counters.publish(telemetry);
    outcome.records
}

/// Mirrors the sweeper's baselines into the kernel map, for an agent that takes over after this
/// one dies. Records of the sweep still in the pipeline when it dies are not reported twice, but
/// also not at all: at most a sweep's worth, against every count since the last report.
fn keep_baselines(
    reported: &mut HashMap<MapData, FlowKey, ReportedCounts>,
    outcome: &super::sweep::SweepOutcome,
) {
    for key in outcome.evict.iter().chain(&outcome.forgotten) {
        match reported.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(err) => tracing::debug!(error = %err, "forgetting a flow's baseline"),
        }
    }
    for (key, baseline) in &outcome.baselines {
        if let Err(err) = reported.insert(key, baseline, 0) {
            tracing::debug!(error = %err, "keeping a flow's baseline");
        }
    }
}

/// The kernel's per-CPU counters, summed into telemetry at every sweep.
struct KernelCounters {
    counters: PerCpuArray<MapData, u64>,
    drop_reasons: Option<DropReasonCounters>,
}

/// Host-wide drops by reason, with each slot's reason named once.
struct DropReasonCounters {
    map: PerCpuArray<MapData, u64>,
    reasons: Vec<String>,
}

impl KernelCounters {
    fn publish(&self, telemetry: &Telemetry) {
        for index in 0..COUNTER_COUNT {
            if let Ok(values) = self.counters.get(&index, 0) {
                telemetry.set_counter(Counter::Kernel(index), values.iter().sum());
            }
        }
        // Host-wide, any namespace: `kernel_drops` counts only the monitored one's.
        let Some(drops) = &self.drop_reasons else {
            return;
        };
        for (slot, reason) in (0..flowd_common::DROP_REASON_SLOTS).zip(&drops.reasons) {
            let Ok(values) = drops.map.get(&slot, 0) else {
                continue;
            };
            let total: u64 = values.iter().sum();
            if total > 0 {
                telemetry.set_counter(Counter::HostDrops(reason.clone()), total);
            }
        }
    }
}
