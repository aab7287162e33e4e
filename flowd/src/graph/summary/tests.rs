use std::time::{Duration, SystemTime};

use super::*;
use crate::graph::{from_history, GraphBuilder, LoadedPolicy, DEFAULT_MAX_EDGES};
use crate::proto::v1 as pb;
use crate::query::FlowMatcher;
use crate::store::{FlowStore, Period, Retention};

const MINUTE_NS: u64 = 60_000_000_000;

/// A minute well after the epoch, so windows can start before it.
const BASE: u64 = 29_000_000;

fn at(period: u64, second: u64) -> u64 {
    period * MINUTE_NS + second * 1_000_000_000
}

fn endpoint(i: usize) -> pb::Endpoint {
    match i % 7 {
        5 => pb::Endpoint {
            ip: format!("203.0.113.{}", i % 3),
            port: 443,
            kind: pb::EndpointKind::WorldPublic as i32,
            ..Default::default()
        },
        6 => pb::Endpoint {
            ip: "198.18.0.9".into(),
            port: 10250,
            kind: pb::EndpointKind::Host as i32,
            node: "node-b".into(),
            ..Default::default()
        },
        w => pb::Endpoint {
            ip: format!("198.18.1.{i}"),
            port: 7000 + (i % 4) as u32,
            kind: pb::EndpointKind::Pod as i32,
            namespace: format!("ns-{}", w % 2),
            name: format!("app-{w}-{}", i % 3),
            workload: Some(pb::Workload {
                kind: "Deployment".into(),
                name: format!("app-{w}"),
            }),
            ..Default::default()
        },
    }
}

/// Records over several minutes with every field the graph folds varied.
fn varied(end_ns: impl Fn(usize) -> u64) -> Vec<pb::Flow> {
    (0..400)
        .map(|i| {
            let denied = i % 9 == 0;
            let decision = |allowed: bool, rule_index: i32| pb::PolicyDecision {
                allowed,
                policy: (i % 4 != 0).then(|| pb::PolicyRef {
                    kind: "NetworkPolicy".into(),
                    tier: "default".into(),
                    namespace: "ns-0".into(),
                    name: format!("policy-{}", i % 3),
                    rule_index,
                    rule_name: String::new(),
                }),
                action: if allowed { "Allow" } else { "EndOfTierDeny" }.into(),
                trace: vec![],
            };
            pb::Flow {
                node: format!("node-{}", i % 2),
                protocol: if i % 11 == 0 {
                    pb::Protocol::Icmp
                } else if i % 3 == 0 {
                    pb::Protocol::Udp
                } else {
                    pb::Protocol::Tcp
                } as i32,
                source: Some(endpoint(i)),
                destination: Some(endpoint(i * 5 + 1)),
                request: Some(pb::TrafficCounters {
                    packets: i as u64 % 13,
                    bytes: 100 * i as u64,
                    ..Default::default()
                }),
                reply: (i % 2 == 0).then(|| pb::TrafficCounters {
                    packets: 2,
                    bytes: 77,
                    ..Default::default()
                }),
                verdict: if denied {
                    pb::Verdict::Denied
                } else if i % 10 == 0 {
                    pb::Verdict::Dropped
                } else {
                    pb::Verdict::Forwarded
                } as i32,
                outcome: (i % 9) as i32,
                drop_reason: match i % 10 {
                    0 => "NETFILTER_DROP".into(),
                    3 => "NO_SOCKET".into(),
                    _ => String::new(),
                },
                connections: 1 + (i as u64 % 3),
                ingress: Some(decision(!denied, if denied { -1 } else { 0 })),
                egress: (i % 5 == 0).then(|| decision(true, 1)),
                start_time: Some(crate::flow::wire::timestamp_ns(end_ns(i) - 1_000_000)),
                end_time: Some(crate::flow::wire::timestamp_ns(end_ns(i))),
                ..Default::default()
            }
        })
        .collect()
}

fn spread(i: usize) -> u64 {
    at(BASE + (i % 4) as u64, (i as u64 * 7) % 60)
}

fn loaded() -> Vec<LoadedPolicy> {
    vec![LoadedPolicy {
        reference: pb::PolicyRef {
            kind: "NetworkPolicy".into(),
            tier: "default".into(),
            namespace: "ns-0".into(),
            name: "policy-1".into(),
            rule_index: 0,
            rule_name: String::new(),
        },
        text: "kind: NetworkPolicy".into(),
        origin: "test".into(),
    }]
}

fn from_records<'a>(flows: impl IntoIterator<Item = &'a pb::Flow>) -> pb::GetGraphResponse {
    let mut builder = GraphBuilder::new();
    for flow in flows {
        builder.add(flow);
    }
    builder.finish(DEFAULT_MAX_EDGES, &loaded())
}

fn open(dir: &tempfile::TempDir, retention: Retention) -> FlowStore {
    FlowStore::open(&dir.path().join("flows.redb"), retention, 1 << 20).unwrap()
}

const FOREVER: Retention = Retention {
    max_age: Duration::from_secs(100 * 365 * 86400),
    max_bytes: u64::MAX,
};

/// Stores `flows` and, as the summary stage does, offers every period they fall in as if all
/// had ended; returns how many minutes were summarised.
fn store_with_summaries(store: &FlowStore, flows: &[pb::Flow]) -> usize {
    store.append(flows.to_vec()).unwrap();
    let mut periods = Periods::default();
    flows.iter().for_each(|f| periods.add(f));
    store_closed(store, periods.take_all(), u64::MAX);
    summarised(store).len()
}

/// The summarised minutes, counted from BASE.
fn summarised(store: &FlowStore) -> Vec<u64> {
    coarser(store, 0)
}

/// The summarised periods of `level`, as minutes from BASE to their start.
fn coarser(store: &FlowStore, level: u8) -> Vec<u64> {
    store
        .summarised_periods()
        .unwrap()
        .into_iter()
        .filter(|p| p.level() == level)
        .map(|p| p.span().start / MINUTE_NS - BASE)
        .collect()
}

fn graph(store: &FlowStore, since_ns: u64, until_ns: u64) -> pb::GetGraphResponse {
    from_history(
        store,
        &FlowMatcher::all(),
        since_ns,
        until_ns,
        DEFAULT_MAX_EDGES,
        &loaded(),
    )
    .unwrap()
}

/// The window's graph through summaries equals the graph of `flows` folded one by one.
fn assert_window_is_of(store: &FlowStore, since_ns: u64, until_ns: u64, flows: &[pb::Flow]) {
    let mut got = graph(store, since_ns, until_ns);
    (got.since, got.until) = (None, None);
    assert_eq!(got, from_records(flows));
}

/// Appends a record that ends at `end_ns`, after its minute was summarised; returns the history
/// now held, in the order it was appended.
fn append_late(store: &FlowStore, flows: &[pb::Flow], end_ns: u64) -> Vec<pb::Flow> {
    let late = varied(|_| end_ns).remove(4);
    store.append(vec![late.clone()]).unwrap();
    let mut all = flows.to_vec();
    all.push(late);
    all
}

#[test]
fn folding_summaries_gives_the_graph_of_the_records() {
    let flows = varied(spread);
    let mut periods = Periods::default();
    flows.iter().for_each(|f| periods.add(f));
    let closed = periods.take_all();
    assert_eq!(closed.len(), 4);
    let mut builder = GraphBuilder::new();
    for period in &closed {
        let encoded =
            prost::Message::encode_to_vec(&convert::summarise(period.builder_for_tests()));
        fold(
            &mut builder,
            &prost::Message::decode(encoded.as_slice()).unwrap(),
        );
    }
    let through_summaries = builder.finish(DEFAULT_MAX_EDGES, &loaded());
    let whole = from_records(&flows);
    assert!(whole.edges.len() > 20 && whole.nodes.len() > 5, "{whole:?}");
    assert!(whole.nodes.iter().any(|n| n.pod_count == 3));
    assert_eq!(through_summaries, whole);
}

#[test]
fn a_window_reads_summaries_for_whole_minutes_and_records_for_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, FOREVER);
    let flows = varied(spread);
    assert_eq!(store_with_summaries(&store, &flows), 4);
    assert_eq!(summarised(&store), [0, 1, 2, 3]);
    // Partial minutes at both ends, whole ones between.
    let (since, until) = (at(BASE, 30), at(BASE + 3, 20));
    let inside = flows.iter().filter(|f| {
        let end = f.end_time.as_ref().map_or(0, crate::store::time_ns);
        (since..until).contains(&end)
    });
    let expected = from_records(inside);
    let mut got = graph(&store, since, until);
    got.since = None;
    got.until = None;
    assert_eq!(got, expected);
    // A filtered window reads records only, and agrees.
    let filtered = from_history(
        &store,
        &FlowMatcher::new(&[pb::FlowFilter::default()], &[]).unwrap(),
        since,
        until,
        DEFAULT_MAX_EDGES,
        &loaded(),
    )
    .unwrap();
    assert_eq!(filtered.edges, expected.edges);
}

#[test]
fn a_late_record_deletes_its_minutes_summary_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, FOREVER);
    let flows = varied(spread);
    store_with_summaries(&store, &flows);
    let all = append_late(&store, &flows, at(BASE + 1, 59));
    assert_eq!(summarised(&store), [0, 2, 3]);
    let window = (at(BASE, 0), at(BASE + 4, 0));
    assert_window_is_of(&store, window.0, window.1, &all);
}

#[test]
fn a_summary_that_missed_records_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, FOREVER);
    let flows = varied(spread);
    store.append(flows.clone()).unwrap();
    // The stage saw only part of the history (it started later, or fell behind).
    let mut periods = Periods::default();
    flows
        .iter()
        .enumerate()
        .filter(|(i, _)| *i >= 10 || i % 4 >= 2)
        .for_each(|(_, f)| periods.add(f));
    let stored: Vec<bool> = periods
        .take_all()
        .iter()
        .map(|p| p.store(&store).unwrap())
        .collect();
    assert_eq!(
        stored,
        [false, false, true, true],
        "periods 0 and 1 missed some of records 0..10"
    );
    assert_window_is_of(&store, at(BASE, 0), at(BASE + 4, 0), &flows);
}

#[test]
fn retention_deletes_the_summaries_of_what_it_removes() {
    let dir = tempfile::tempdir().unwrap();
    let mut flows = varied(|i| at(BASE + (i / 100) as u64, (i % 60) as u64));
    flows.sort_by_key(|f| f.end_time.as_ref().map_or(0, crate::store::time_ns));
    {
        let store = open(&dir, FOREVER);
        store_with_summaries(&store, &flows);
        assert_eq!(summarised(&store), [0, 1, 2, 3]);
    }
    let bytes = {
        let store = open(&dir, FOREVER);
        // Reopening keeps them.
        assert_eq!(summarised(&store), [0, 1, 2, 3]);
        store.record_bytes()
    };
    let store = open(
        &dir,
        Retention {
            max_bytes: bytes * 6 / 10,
            ..FOREVER
        },
    );
    let removed = store.enforce_retention(SystemTime::now()).unwrap();
    assert!((100..=200).contains(&removed), "{removed}");
    assert_eq!(
        summarised(&store).first(),
        Some(&2),
        "{:?}",
        summarised(&store)
    );
    assert_window_is_of(
        &store,
        at(BASE, 0),
        at(BASE + 4, 0),
        &flows[removed as usize..],
    );
}

#[test]
fn summaries_of_a_history_written_without_them_are_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.redb");
    {
        let store = open(&dir, FOREVER);
        store_with_summaries(&store, &varied(spread));
    }
    {
        // An older flowd appends: it moves the next cursor, not the summaries' stamp.
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("next_cursor", 1_000).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = open(&dir, FOREVER);
    assert_eq!(summarised(&store), Vec::<u64>::new());
}

#[test]
fn ten_whole_minutes_are_combined_into_one_summary_that_a_late_record_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, FOREVER);
    // Minutes BASE..BASE+12: one ten-minute period (BASE is on a boundary) and two minutes.
    let flows = varied(|i| at(BASE + (i % 12) as u64, (i as u64 * 7) % 60));
    assert_eq!(store_with_summaries(&store, &flows), 12);
    assert_eq!(coarser(&store, 1), [0]);
    let window = (at(BASE, 0), at(BASE + 12, 0));
    let mut read = Vec::new();
    let gaps = store
        .visit_summaries(window.0, window.1, |p, _| {
            read.push(p.level());
            true
        })
        .unwrap();
    assert_eq!(read, [1, 0, 0], "one ten-minute summary, then two minutes");
    assert!(gaps.is_empty(), "{gaps:?}");
    assert_window_is_of(&store, window.0, window.1, &flows);

    let all = append_late(&store, &flows, at(BASE + 4, 59));
    assert_eq!(coarser(&store, 1), Vec::<u64>::new());
    assert_eq!(summarised(&store).len(), 11);
    assert_window_is_of(&store, window.0, window.1, &all);
}

#[test]
fn a_period_still_open_is_not_combined() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, FOREVER);
    let flows = varied(|i| at(BASE + (i % 10) as u64, (i as u64 * 7) % 60));
    store.append(flows.clone()).unwrap();
    let mut periods = Periods::default();
    flows.iter().for_each(|f| periods.add(f));
    // Every minute has closed, but the ten minutes end only at BASE + 10.
    store_closed(&store, periods.take_all(), at(BASE + 9, 59));
    assert_eq!(summarised(&store).len(), 10);
    assert_eq!(coarser(&store, 1), Vec::<u64>::new());
    let period = Period::minute_of(at(BASE, 0)).parent().unwrap();
    assert!(store
        .combine_summaries(period, super::convert::combine)
        .unwrap());
    assert_eq!(coarser(&store, 1), [0]);
}
