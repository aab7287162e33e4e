use super::*;
use crate::store::Retention;

struct Fixture {
    _dir: tempfile::TempDir,
    hub: Hub,
    telemetry: Telemetry,
}

fn fixture(subscriber_buffer: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = FlowStore::open(
        &dir.path().join("flows.redb"),
        Retention {
            max_age: Duration::from_secs(3600),
            max_bytes: u64::MAX,
        },
        1 << 20,
    )
    .unwrap();
    Fixture {
        _dir: dir,
        hub: Hub::new(Arc::new(store), subscriber_buffer),
        telemetry: Telemetry::new("n", 1),
    }
}

async fn publish(fx: &Fixture, ports: std::ops::RangeInclusive<u16>) {
    fx.hub
        .publish(ports.map(FlowRecord::sample).collect(), &fx.telemetry)
        .await;
}

async fn cursor(sub: &mut Subscription) -> u64 {
    match sub.next().await {
        Some(Ok(SubscriptionEvent::Flow(flow))) => flow.cursor,
        other => panic!("expected a flow, got {other:?}"),
    }
}

#[tokio::test]
async fn last_n_then_end_without_follow() {
    let fx = fixture(10);
    publish(&fx, 1..=5).await;
    let mut sub = fx
        .hub
        .subscribe(Backlog::Last(2), false, FlowMatcher::all());
    assert_eq!(cursor(&mut sub).await, 4);
    assert_eq!(cursor(&mut sub).await, 5);
    assert!(sub.next().await.is_none());
}

#[tokio::test]
async fn resume_after_cursor_replays_exactly_then_follows() {
    let fx = fixture(10);
    publish(&fx, 1..=5).await;
    let mut sub = fx.hub.subscribe(
        Backlog::Range(Range::AfterCursor(3)),
        true,
        FlowMatcher::all(),
    );
    publish(&fx, 6..=6).await;
    assert_eq!(cursor(&mut sub).await, 4);
    assert_eq!(cursor(&mut sub).await, 5);
    assert_eq!(
        cursor(&mut sub).await,
        6,
        "live after replay, no duplicate, no gap"
    );
}

#[tokio::test]
async fn filters_apply_to_replay_and_live() {
    let fx = fixture(10);
    publish(&fx, 1..=4).await;
    let only_port_2_and_6 = FlowMatcher::new(
        &[crate::proto::v1::FlowFilter {
            source_port: vec![2, 6],
            ..Default::default()
        }],
        &[],
    )
    .unwrap();
    let mut sub = fx
        .hub
        .subscribe(Backlog::Last(100), true, only_port_2_and_6);
    publish(&fx, 5..=6).await;
    assert_eq!(cursor(&mut sub).await, 2);
    assert_eq!(cursor(&mut sub).await, 6);
}

#[tokio::test]
async fn slow_follower_gets_a_gap_marker_pointing_into_the_store() {
    let fx = fixture(4);
    let mut sub = fx.hub.subscribe(Backlog::None, true, FlowMatcher::all());
    publish(&fx, 1..=10).await;
    match sub.next().await {
        Some(Ok(SubscriptionEvent::Lost {
            count,
            resume_after,
            next_cursor,
        })) => {
            assert_eq!((count, resume_after, next_cursor), (6, 0, 7));
        }
        other => panic!("expected a gap marker, got {other:?}"),
    }
    assert_eq!(cursor(&mut sub).await, 7);
    // Capture was never blocked: every record is in the store, and the gap can be replayed.
    assert_eq!(fx.hub.store().len(), 10);
    let mut replay = fx.hub.subscribe(
        Backlog::Range(Range::AfterCursor(0)),
        false,
        FlowMatcher::all(),
    );
    for expected in 1..=10 {
        assert_eq!(cursor(&mut replay).await, expected);
    }
}

#[tokio::test]
async fn follow_ends_when_the_store_closes() {
    let fx = fixture(10);
    let mut sub = fx.hub.subscribe(Backlog::None, true, FlowMatcher::all());
    publish(&fx, 1..=1).await;
    fx.hub.close();
    assert_eq!(
        cursor(&mut sub).await,
        1,
        "published records still reach followers"
    );
    assert!(sub.next().await.is_none());
}

#[tokio::test]
async fn last_beyond_the_history_replays_everything_a_page_at_a_time() {
    let fx = fixture(10);
    let stored = 2 * crate::store::PAGE + 10;
    let records = (0..stored)
        .map(|i| FlowRecord::sample(1 + (i % 60_000) as u16))
        .collect();
    fx.hub.publish(records, &fx.telemetry).await;
    let mut sub = fx
        .hub
        .subscribe(Backlog::Last(usize::MAX), false, FlowMatcher::all());
    let mut most_buffered = 0;
    for expected in 1..=stored as u64 {
        assert_eq!(cursor(&mut sub).await, expected);
        most_buffered = most_buffered.max(sub.buffered.len());
    }
    assert!(sub.next().await.is_none());
    assert!(
        most_buffered < crate::store::PAGE,
        "the replay held {most_buffered} records at once"
    );
}

#[test]
fn held_records_beyond_the_limit_lose_the_oldest_and_count_them() {
    let telemetry = Telemetry::new("n", 1);
    let mut held = Held {
        flows: Vec::new(),
        limit: 5,
    };
    let flows = |ports: std::ops::Range<u16>| -> Vec<pb::Flow> {
        ports
            .map(|p| wire::to_proto(&FlowRecord::sample(p)))
            .collect()
    };
    held.keep(flows(0..3), &telemetry);
    assert_eq!(telemetry.history_held.load(Ordering::Relaxed), 3);
    // A failed write gives back what was held first, then the new batch.
    let mut offered = std::mem::take(&mut held.flows);
    offered.extend(flows(3..7));
    held.keep(offered, &telemetry);
    let ports: Vec<u32> = held
        .flows
        .iter()
        .map(|f| f.source.as_ref().map_or(0, |s| s.port))
        .collect();
    assert_eq!(ports, [2, 3, 4, 5, 6]);
    assert_eq!(telemetry.history_held.load(Ordering::Relaxed), 5);
    assert_eq!(
        telemetry.lost(false).get("history_write_failed"),
        Some(&2),
        "{:?}",
        telemetry.lost(false)
    );
}
