use super::*;

fn record(port: u16) -> FlowRecord {
    FlowRecord::sample(port)
}

fn cursor(event: Option<SubscriptionEvent>) -> u64 {
    match event {
        Some(SubscriptionEvent::Flow(flow)) => flow.cursor,
        other => panic!("expected a flow, got {other:?}"),
    }
}

#[tokio::test]
async fn last_n_then_end_without_follow() {
    let hub = Hub::new(10, 10);
    hub.publish((1..=5).map(record).collect());
    let mut sub = hub.subscribe(2, false);
    assert_eq!(cursor(sub.next().await), 4);
    assert_eq!(cursor(sub.next().await), 5);
    assert!(sub.next().await.is_none());
}

#[tokio::test]
async fn history_keeps_newest_and_cursors_keep_growing() {
    let hub = Hub::new(3, 10);
    hub.publish((1..=5).map(record).collect());
    assert_eq!(hub.history().bounds(), Some((3, 5)));
    let mut sub = hub.subscribe(100, false);
    let cursors = [
        cursor(sub.next().await),
        cursor(sub.next().await),
        cursor(sub.next().await),
    ];
    assert_eq!(cursors, [3, 4, 5]);
}

#[tokio::test]
async fn follow_continues_after_backlog_without_duplicates() {
    let hub = Hub::new(10, 10);
    hub.publish(vec![record(1)]);
    let mut sub = hub.subscribe(1, true);
    hub.publish(vec![record(2), record(3)]);
    assert_eq!(cursor(sub.next().await), 1);
    assert_eq!(cursor(sub.next().await), 2);
    assert_eq!(cursor(sub.next().await), 3);
}

#[tokio::test]
async fn slow_follower_gets_a_gap_marker_then_continues() {
    let hub = Hub::new(100, 4);
    let mut sub = hub.subscribe(0, true);
    hub.publish((1..=10).map(record).collect());
    match sub.next().await {
        Some(SubscriptionEvent::Lost { count, next_cursor }) => {
            assert_eq!(count, 6);
            assert_eq!(next_cursor, 7);
        }
        other => panic!("expected a gap marker, got {other:?}"),
    }
    assert_eq!(cursor(sub.next().await), 7);
    // Capture was never blocked: every record is in history.
    assert_eq!(hub.history().len(), 10);
}

#[tokio::test]
async fn follow_ends_when_the_store_closes() {
    let hub = Hub::new(10, 10);
    let mut sub = hub.subscribe(0, true);
    hub.publish(vec![record(1)]);
    hub.close();
    assert_eq!(
        cursor(sub.next().await),
        1,
        "published records still reach followers"
    );
    assert!(sub.next().await.is_none());
}
