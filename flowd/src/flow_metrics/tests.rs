use std::{net::IpAddr, sync::Arc};

use flowd_policy::{PolicyKind, PolicyRef, Ruling};

use super::*;
use crate::model::{
    EndpointMeta, FlowRecord, Outcome, PolicyVerdict, ReportReason, SideVerdict, Verdict, Workload,
};

fn settings(metrics: &[FlowMetric], labels: &[&str], max_series: usize) -> FlowMetricSettings {
    FlowMetricSettings {
        metrics: metrics.to_vec(),
        labels: labels.iter().map(|l| l.parse().unwrap()).collect(),
        max_series,
    }
}

fn pod(namespace: &str, workload: &str) -> Option<Arc<EndpointMeta>> {
    let mut meta = EndpointMeta::world(IpAddr::from([198, 18, 0, 9]));
    meta.kind = crate::model::EndpointKind::Pod;
    meta.namespace = namespace.to_owned();
    meta.name = format!("{workload}-7d4f9-x2x");
    meta.workload = Some(Workload::new("Deployment", workload));
    Some(Arc::new(meta))
}

fn denied_by(namespace: &str, name: &str, rule: i32) -> Option<Arc<PolicyVerdict>> {
    let allowed = SideVerdict {
        allowed: true,
        policy: None,
        rule: None,
        rule_name: None,
        ruling: Ruling::NoPolicy,
        trace: Vec::new(),
    };
    let denied = SideVerdict {
        allowed: false,
        policy: Some(PolicyRef {
            kind: PolicyKind::CalicoNetworkPolicy,
            tier: "default".into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }),
        rule: Some(rule),
        rule_name: None,
        ruling: Ruling::EndOfTierDeny,
        trace: Vec::new(),
    };
    Some(Arc::new(PolicyVerdict {
        egress: allowed,
        ingress: denied,
    }))
}

fn total(snapshot: &[FamilySnapshot], metric: FlowMetric, keep: impl Fn(&Key) -> bool) -> u64 {
    snapshot
        .iter()
        .filter(|f| f.metric == metric)
        .flat_map(|f| f.series.iter())
        .filter(|(key, _)| keep(key))
        .map(|(_, value)| value)
        .sum()
}

#[test]
fn each_family_counts_what_its_name_says() {
    let metrics = FlowMetrics::new(&settings(&FlowMetric::ALL, &[], 100));
    let answered = FlowRecord::sample(40000);
    let mut live = FlowRecord::sample(40001);
    live.reason = ReportReason::ActiveTimeout;
    let mut dropped = FlowRecord::sample(40002);
    dropped.verdict = Verdict::Dropped;
    dropped.outcome = Outcome::Unanswered;
    dropped.request.dropped_packets = 3;
    dropped.drop_reason = Some("NETFILTER_DROP".into());
    let mut denied = FlowRecord::sample(40003);
    denied.verdict = Verdict::Denied;
    denied.policy = denied_by("fmeserver", "default-deny-fmeserver", -1);
    metrics.count(&[answered, live, dropped]);
    metrics.count(&[denied]);

    let snapshot = metrics.snapshot();
    assert_eq!(total(&snapshot, FlowMetric::Flows, |_| true), 4);
    assert_eq!(
        total(&snapshot, FlowMetric::Connections, |_| true),
        3,
        "the live connection's report does not count it yet"
    );
    // Each sample sends 60 bytes out and gets 120 back in one packet each way.
    assert_eq!(total(&snapshot, FlowMetric::Bytes, |_| true), 4 * 180);
    assert_eq!(total(&snapshot, FlowMetric::Packets, |_| true), 8);
    assert_eq!(
        total(&snapshot, FlowMetric::Drops, |k| matches!(
            &k.base, Base::Drop { reason } if reason == "NETFILTER_DROP"
        )),
        3
    );
    assert_eq!(
        total(&snapshot, FlowMetric::Denials, |k| matches!(
            &k.base,
            Base::Denial { policy, rule: Some(-1), verdict: Verdict::Denied }
                if policy.name == "default-deny-fmeserver"
        )),
        1
    );
    assert_eq!(
        total(&snapshot, FlowMetric::Outcomes, |k| matches!(
            k.base,
            Base::Outcome {
                outcome: Outcome::Unanswered,
                protocol: 17
            }
        )),
        1
    );
    assert_eq!(
        total(&snapshot, FlowMetric::Flows, |k| matches!(
            k.base,
            Base::Traffic {
                verdict: Verdict::Dropped,
                protocol: 17,
                direction: Direction::Egress
            }
        )),
        1
    );
}

#[test]
fn context_labels_are_only_where_asked_for() {
    let metrics = FlowMetrics::new(&settings(
        &[FlowMetric::Flows, FlowMetric::Bytes],
        &["bytes=destination_namespace,source_workload"],
        100,
    ));
    let mut record = FlowRecord::sample(40000);
    record.source_meta = pod("engine", "engine-standard-group");
    record.destination_meta = pod("fmeserver", "core");
    metrics.count(&[record]);
    let snapshot = metrics.snapshot();
    let flows = snapshot
        .iter()
        .find(|f| f.metric == FlowMetric::Flows)
        .unwrap();
    assert!(flows.labels.is_empty());
    assert!(flows
        .series
        .iter()
        .all(|(k, _)| k.context.iter().all(|v| v.is_empty())));
    let bytes = snapshot
        .iter()
        .find(|f| f.metric == FlowMetric::Bytes)
        .unwrap();
    assert_eq!(
        bytes.labels,
        [
            ContextLabel::SourceWorkload,
            ContextLabel::DestinationNamespace
        ]
    );
    let (key, value) = &bytes.series[0];
    assert_eq!(*value, 180);
    assert_eq!(
        key.context[ContextLabel::SourceWorkload.index()],
        "engine-standard-group"
    );
    assert_eq!(
        key.context[ContextLabel::DestinationNamespace.index()],
        "fmeserver"
    );
    assert_eq!(key.context[ContextLabel::SourceNamespace.index()], "");
    assert!(
        snapshot.iter().all(|f| f.metric != FlowMetric::Denials),
        "off"
    );
}

#[test]
fn ten_thousand_workloads_stay_under_the_series_cap_and_the_rest_is_folded_and_counted() {
    let cap = 500;
    let metrics = FlowMetrics::new(&settings(
        &[FlowMetric::Flows, FlowMetric::Bytes],
        &[
            "flows=source_workload,destination_workload",
            "bytes=source_workload",
        ],
        cap,
    ));
    let workloads = 10_000;
    let records: Vec<FlowRecord> = (0..workloads)
        .map(|i| {
            let mut record = FlowRecord::sample(40000);
            record.source_meta = pod("tenants", &format!("client-{i}"));
            record.destination_meta = pod("shared", "api");
            record
        })
        .collect();
    for batch in records.chunks(256) {
        metrics.count(batch);
    }
    for family in metrics.snapshot() {
        // The cap, and one `_other` series per combination of fixed labels (here one).
        assert!(
            family.series.len() <= cap + 1,
            "{:?}: {} series",
            family.metric,
            family.series.len()
        );
        assert_eq!(
            family.folded,
            (workloads - cap) as u64,
            "{:?}",
            family.metric
        );
        let folded: u64 = family
            .series
            .iter()
            .filter(|(k, _)| k.context[ContextLabel::SourceWorkload.index()] == FOLDED)
            .map(|(_, v)| v)
            .sum();
        let per_record = if family.metric == FlowMetric::Bytes {
            180
        } else {
            1
        };
        assert_eq!(folded, (workloads - cap) as u64 * per_record);
        let all: u64 = family.series.iter().map(|(_, v)| v).sum();
        assert_eq!(
            all,
            workloads as u64 * per_record,
            "nothing is lost by folding"
        );
    }
}

#[test]
fn no_family_on_counts_nothing() {
    let metrics = FlowMetrics::new(&settings(&[], &[], 10));
    metrics.count(&[FlowRecord::sample(1)]);
    assert!(metrics.snapshot().is_empty());
}

#[test]
fn label_values_compare_by_text_whatever_their_storage() {
    use std::borrow::Cow;
    let empty_owned = LabelValue(Cow::Owned(String::new()));
    assert_eq!(empty_owned, LabelValue(Cow::Borrowed("")));
    assert_eq!(empty_owned, "");
    assert_ne!(empty_owned, "a");
    assert_eq!(LabelValue(Cow::Owned("api".to_owned())), "api");
    assert_ne!(LabelValue(Cow::Borrowed("api")), "apj");
}

#[test]
fn traffic_families_sharing_labels_count_as_each_alone() {
    let shared = FlowMetrics::new(&settings(
        &[
            FlowMetric::Flows,
            FlowMetric::Connections,
            FlowMetric::Bytes,
            FlowMetric::Packets,
        ],
        &[
            "flows=source_namespace",
            "connections=source_namespace",
            "bytes=source_namespace",
            "packets=source_namespace",
        ],
        100,
    ));
    let mut live = FlowRecord::sample(40001);
    live.reason = ReportReason::ActiveTimeout;
    live.source_meta = pod("tenants", "client");
    let mut ended = FlowRecord::sample(40002);
    ended.source_meta = pod("tenants", "client");
    let batch = [live, ended];
    shared.count(&batch);
    let snapshot = shared.snapshot();
    let of = |metric| total(&snapshot, metric, |_| true);
    assert_eq!(of(FlowMetric::Flows), 2);
    assert_eq!(
        of(FlowMetric::Connections),
        1,
        "the live report is not counted"
    );
    assert_eq!(of(FlowMetric::Bytes), 2 * 180);
    assert_eq!(of(FlowMetric::Packets), 4);
    for metric in FlowMetric::ALL.into_iter().take(4) {
        let alone = FlowMetrics::new(&settings(&[metric], &[], 100));
        alone.count(&batch);
        assert_eq!(
            total(&alone.snapshot(), metric, |_| true),
            of(metric),
            "{metric:?}"
        );
    }
}
