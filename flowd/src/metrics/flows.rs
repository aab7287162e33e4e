//! The flow metrics' families as Prometheus reads them: names, HELP, label names and values.

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{counters, Labels};
use crate::{
    flow_metrics::{Base, Direction, FamilySnapshot, FlowMetric, FlowMetrics},
    model::{Outcome, Verdict},
};

fn name_and_help(metric: FlowMetric) -> (&'static str, &'static str) {
    match metric {
        FlowMetric::Flows => (
            "flowd_flows",
            "Flow records by verdict, protocol and direction (the hook where the connection's \
             first packets were seen); a live connection has one per report interval",
        ),
        FlowMetric::Connections => (
            "flowd_connections",
            "Connections by verdict, protocol and direction, counted once by their last record \
             (ended, idle, or reported early because the flow map was full)",
        ),
        FlowMetric::Bytes => (
            "flowd_flow_bytes",
            "Bytes of IP packets both sides of a flow sent, headers included",
        ),
        FlowMetric::Packets => ("flowd_flow_packets", "IP packets both sides of a flow sent"),
        FlowMetric::Drops => (
            "flowd_kernel_dropped_packets",
            "Packets of flows the kernel dropped, by its drop reason (NETFILTER_DROP, \
             NO_SOCKET...)",
        ),
        FlowMetric::Denials => (
            "flowd_policy_denials",
            "Flow records a network policy denies, by the deciding policy, rule (-1: the end of \
             its tier) and tier; verdict not_enforced: the policy denies it, yet it got through",
        ),
        FlowMetric::Outcomes => (
            "flowd_flow_outcomes",
            "Flow records by what became of the connection (established, refused, reset, \
             unanswered...)",
        ),
    }
}

fn verdict_label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Forwarded => "forwarded",
        Verdict::Dropped => "dropped",
        Verdict::Denied => "denied",
        Verdict::NotEnforced => "not_enforced",
    }
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Established => "established",
        Outcome::Closed => "closed",
        Outcome::Reset => "reset",
        Outcome::Refused => "refused",
        Outcome::Unanswered => "unanswered",
        Outcome::Answered => "answered",
        Outcome::RequestOnly => "request_only",
        Outcome::Unreachable => "unreachable",
    }
}

fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
        Direction::Unknown => "unknown",
    }
}

fn base_labels(base: &Base<'_>) -> Labels {
    match base {
        Base::Traffic {
            verdict,
            protocol,
            direction,
        } => vec![
            ("verdict", verdict_label(*verdict).to_owned()),
            (
                "protocol",
                crate::proto::protocol_name(i32::from(*protocol)),
            ),
            ("direction", direction_label(*direction).to_owned()),
        ],
        Base::Drop { reason } => vec![("reason", reason.to_string())],
        Base::Denial {
            verdict,
            policy,
            rule,
        } => vec![
            ("verdict", verdict_label(*verdict).to_owned()),
            ("policy_kind", policy.kind.as_str().to_owned()),
            (
                "policy_namespace",
                policy.namespace.clone().unwrap_or_default(),
            ),
            ("policy", policy.name.clone()),
            ("rule", rule.map(|r| r.to_string()).unwrap_or_default()),
            ("tier", policy.tier.clone()),
        ],
        Base::Outcome { outcome, protocol } => vec![
            ("outcome", outcome_label(*outcome).to_owned()),
            (
                "protocol",
                crate::proto::protocol_name(i32::from(*protocol)),
            ),
        ],
    }
}

fn family(encoder: &mut DescriptorEncoder, family: FamilySnapshot) -> Result<(), std::fmt::Error> {
    let (name, help) = name_and_help(family.metric);
    let context = family.labels;
    counters(
        encoder,
        name,
        help,
        family.series.into_iter().map(|(key, value)| {
            let mut labels = base_labels(&key.base);
            labels.extend(
                context
                    .iter()
                    .map(|label| (label.as_str(), key.context[label.index()].to_string())),
            );
            (labels, value)
        }),
    )
}

pub fn encode(flows: &FlowMetrics, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let families = flows.snapshot();
    let folded: Vec<(Labels, u64)> = families
        .iter()
        .map(|f| (vec![("metric", f.metric.as_str().to_owned())], f.folded))
        .collect();
    for snapshot in families {
        family(encoder, snapshot)?;
    }
    if folded.is_empty() {
        return Ok(());
    }
    counters(
        encoder,
        "flowd_flow_metrics_folded",
        "Records a flow metric counted in its `_other` series because it had flowMetricMaxSeries \
         series already",
        folded,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1 as pb;

    #[test]
    fn verdict_labels_are_the_proto_names_in_lower_case() {
        for (verdict, proto) in [
            (Verdict::Forwarded, pb::Verdict::Forwarded),
            (Verdict::Dropped, pb::Verdict::Dropped),
            (Verdict::Denied, pb::Verdict::Denied),
            (Verdict::NotEnforced, pb::Verdict::NotEnforced),
        ] {
            assert_eq!(
                format!("VERDICT_{}", verdict_label(verdict).to_ascii_uppercase()),
                proto.as_str_name()
            );
        }
    }
}
