//! A GetFlows filter as a setting (which records an exporter sends): in the settings file a
//! `flowd.v1.FlowFilter` in its proto3 JSON mapping written as YAML (`{verdict:
//! [VERDICT_DENIED], namespace: [payments]}`), as a flag the same in JSON.

use crate::proto::v1 as pb;

#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(transparent)]
pub struct FlowFilterSetting(pub pb::FlowFilter);

impl std::str::FromStr for FlowFilterSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        serde_json::from_str(text).map(Self).map_err(|err| {
            format!(
                "{err}: give a flowd.v1.FlowFilter as JSON, e.g. '{{\"verdict\": [\"VERDICT_DENIED\"], \
                 \"namespace\": [\"payments\"]}}'"
            )
        })
    }
}

/// The filters as GetFlows takes them.
pub fn flow_filters(settings: &[FlowFilterSetting]) -> Vec<pb::FlowFilter> {
    settings.iter().map(|s| s.0.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_reads_as_json_and_nonsense_names_the_form() {
        let filter: FlowFilterSetting = r#"{"verdict": ["VERDICT_DENIED"], "port": [7070]}"#
            .parse()
            .unwrap();
        assert_eq!(filter.0.verdict, vec![pb::Verdict::Denied as i32]);
        assert_eq!(filter.0.port, vec![7070]);
        let err = "verdict=denied".parse::<FlowFilterSetting>().unwrap_err();
        assert!(err.contains("flowd.v1.FlowFilter as JSON"), "{err}");
    }
}
