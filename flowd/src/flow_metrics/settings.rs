//! Which flow metrics are on and which context labels each carries: the settings' types.

use std::str::FromStr;

/// A flow metric family; its setting name is the family's short name (`denials`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum FlowMetric {
    /// `flowd_flows_total`: flow records by verdict, protocol and direction.
    Flows,
    /// `flowd_connections_total`: connections, counted once when they end.
    Connections,
    /// `flowd_flow_bytes_total`: bytes both sides sent.
    Bytes,
    /// `flowd_flow_packets_total`: packets both sides sent.
    Packets,
    /// `flowd_kernel_dropped_packets_total`: packets the kernel dropped, by reason.
    Drops,
    /// `flowd_policy_denials_total`: records a network policy denied, by policy and rule.
    Denials,
    /// `flowd_flow_outcomes_total`: what became of each flow (refused, reset, unanswered...).
    Outcomes,
}

impl FlowMetric {
    pub const ALL: [FlowMetric; 7] = [
        FlowMetric::Flows,
        FlowMetric::Connections,
        FlowMetric::Bytes,
        FlowMetric::Packets,
        FlowMetric::Drops,
        FlowMetric::Denials,
        FlowMetric::Outcomes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FlowMetric::Flows => "flows",
            FlowMetric::Connections => "connections",
            FlowMetric::Bytes => "bytes",
            FlowMetric::Packets => "packets",
            FlowMetric::Drops => "drops",
            FlowMetric::Denials => "denials",
            FlowMetric::Outcomes => "outcomes",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// A label naming who talked, off unless asked for: each multiplies a family's series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContextLabel {
    SourceNamespace,
    SourceWorkload,
    DestinationNamespace,
    DestinationWorkload,
}

impl ContextLabel {
    pub const ALL: [ContextLabel; 4] = [
        ContextLabel::SourceNamespace,
        ContextLabel::SourceWorkload,
        ContextLabel::DestinationNamespace,
        ContextLabel::DestinationWorkload,
    ];

    /// The Prometheus label name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContextLabel::SourceNamespace => "source_namespace",
            ContextLabel::SourceWorkload => "source_workload",
            ContextLabel::DestinationNamespace => "destination_namespace",
            ContextLabel::DestinationWorkload => "destination_workload",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

/// `METRIC=LABEL[,LABEL...]`: the context labels one flow metric carries, e.g.
/// `denials=source_namespace,destination_workload`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricLabels {
    pub metric: FlowMetric,
    pub labels: Vec<ContextLabel>,
}

impl FromStr for MetricLabels {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let names = |all: &[&str]| all.join(", ");
        let metrics: Vec<&str> = FlowMetric::ALL.iter().map(|m| m.as_str()).collect();
        let labels: Vec<&str> = ContextLabel::ALL.iter().map(|l| l.as_str()).collect();
        let form = format!(
            "give METRIC=LABEL[,LABEL...], e.g. denials=source_namespace,destination_workload; \
             metrics: {}; labels: {}",
            names(&metrics),
            names(&labels)
        );
        let Some((metric, list)) = text.split_once('=') else {
            return Err(format!("`{text}` has no `=`: {form}"));
        };
        let metric = FlowMetric::parse(metric.trim())
            .ok_or_else(|| format!("`{metric}` is no flow metric: {form}"))?;
        let mut parsed = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let label =
                ContextLabel::parse(name).ok_or_else(|| format!("`{name}` is no label: {form}"))?;
            if !parsed.contains(&label) {
                parsed.push(label);
            }
        }
        if parsed.is_empty() {
            return Err(format!("`{text}` names no label: {form}"));
        }
        parsed.sort();
        Ok(Self {
            metric,
            labels: parsed,
        })
    }
}

impl<'de> serde::Deserialize<'de> for MetricLabels {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the flow metrics stage counts: the families on, each one's context labels, the cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowMetricSettings {
    pub metrics: Vec<FlowMetric>,
    pub labels: Vec<MetricLabels>,
    /// Series one family may have; beyond it a record's context labels read `_other`.
    pub max_series: usize,
}

impl FlowMetricSettings {
    /// The context labels `metric` carries (in their fixed order).
    pub fn labels_of(&self, metric: FlowMetric) -> Vec<ContextLabel> {
        let mut labels: Vec<ContextLabel> = self
            .labels
            .iter()
            .filter(|l| l.metric == metric)
            .flat_map(|l| l.labels.iter().copied())
            .collect();
        labels.sort();
        labels.dedup();
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_metric_then_list_and_nonsense_names_the_form() {
        let parsed: MetricLabels = "denials=destination_workload, source_namespace"
            .parse()
            .unwrap();
        assert_eq!(parsed.metric, FlowMetric::Denials);
        assert_eq!(
            parsed.labels,
            [
                ContextLabel::SourceNamespace,
                ContextLabel::DestinationWorkload
            ]
        );
        for (bad, says) in [
            ("denials", "has no `=`"),
            ("denial=source_namespace", "is no flow metric"),
            ("bytes=pod", "is no label"),
            ("bytes=", "names no label"),
        ] {
            let err = bad.parse::<MetricLabels>().unwrap_err();
            assert!(
                err.contains(says) && err.contains("METRIC=LABEL"),
                "{bad}: {err}"
            );
        }
    }
}
