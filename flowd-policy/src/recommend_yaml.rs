//! Output shapes for recommended policies; field order here is YAML order.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Serialize)]
pub(crate) struct Metadata {
    pub name: String,
    pub namespace: String,
}

#[derive(Serialize, Default)]
pub(crate) struct LabelSelectorOut {
    #[serde(rename = "matchLabels", skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub(crate) struct IpBlockOut {
    pub cidr: String,
}

#[derive(Serialize)]
pub(crate) struct K8sPeerOut {
    #[serde(rename = "namespaceSelector", skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelectorOut>,
    #[serde(rename = "podSelector", skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelectorOut>,
    #[serde(rename = "ipBlock", skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlockOut>,
}

#[derive(Serialize)]
pub(crate) struct K8sPortOut {
    pub protocol: String,
    pub port: u16,
    #[serde(rename = "endPort", skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

#[derive(Serialize)]
pub(crate) struct K8sIngressOut {
    pub from: Vec<K8sPeerOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<K8sPortOut>,
}

#[derive(Serialize)]
pub(crate) struct K8sEgressOut {
    pub to: Vec<K8sPeerOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<K8sPortOut>,
}

#[derive(Serialize)]
pub(crate) struct K8sSpecOut {
    #[serde(rename = "podSelector")]
    pub pod_selector: LabelSelectorOut,
    #[serde(rename = "policyTypes")]
    pub policy_types: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<K8sIngressOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<K8sEgressOut>,
}

#[derive(Serialize)]
pub(crate) struct K8sPolicyOut {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Metadata,
    pub spec: K8sSpecOut,
}

/// A Calico port: a number, or a "start:end" range string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CalicoPortOut {
    Number(u16),
    Range(String),
}

impl Serialize for CalicoPortOut {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            CalicoPortOut::Number(port) => serializer.serialize_u16(*port),
            // Quoted: YAML 1.1 readers (PyYAML, some Go libraries) take a small range such as
            // 10:20 for a base-60 integer, and Calico's own docs write ranges quoted.
            CalicoPortOut::Range(range) => {
                serde_saphyr::SingleQuoted(range.as_str()).serialize(serializer)
            }
        }
    }
}

#[derive(Serialize, Default)]
pub(crate) struct CalicoEntityOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(rename = "namespaceSelector", skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<CalicoPortOut>,
}

#[derive(Serialize)]
pub(crate) struct CalicoRuleOut {
    pub action: &'static str,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<CalicoEntityOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<CalicoEntityOut>,
}

#[derive(Serialize)]
pub(crate) struct CalicoSpecOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    pub selector: String,
    pub types: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<CalicoRuleOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<CalicoRuleOut>,
}

#[derive(Serialize)]
pub(crate) struct CalicoPolicyOut {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Metadata,
    pub spec: CalicoSpecOut,
}
