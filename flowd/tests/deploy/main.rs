//! deploy/: the Helm chart rendered by the real Helm engine and checked against the Kubernetes
//! schemas and the agent's own settings check, the ClusterRole, the values schema and the
//! checked-in manifests; as root, the agent running with exactly what the chart grants it.

#[path = "../support/mod.rs"]
mod support;

mod chart;
mod monitoring;
mod privileges;
mod rendering;
