//! Label views that add the labels Kubernetes and Calico attach implicitly,
//! so selectors such as `projectcalico.org/name == 'ns'` work without the
//! integrator copying them into every endpoint.

use std::collections::BTreeMap;

use crate::endpoint::Endpoint;
use crate::selector::LabelView;

/// Namespace labels plus `kubernetes.io/metadata.name` (set by the API server
/// since Kubernetes 1.22) and Calico's `projectcalico.org/name`.
pub struct NamespaceLabels<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

impl<'a> NamespaceLabels<'a> {
    /// Namespace `name`'s labels as `ep` carries them, for a namespace selector.
    pub fn of(name: &'a str, ep: &'a Endpoint) -> Self {
        Self {
            name,
            labels: &ep.namespace_labels,
        }
    }
}

impl LabelView for NamespaceLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        if let Some(v) = self.labels.get(key) {
            return Some(v);
        }
        match key {
            "kubernetes.io/metadata.name" | "projectcalico.org/name" => Some(self.name),
            _ => None,
        }
    }
}

/// Pod labels as Calico's selectors see them: the pod's own labels plus the
/// `projectcalico.org/*` labels Calico puts on every workload endpoint.
pub struct CalicoPodLabels<'a> {
    pub endpoint: &'a Endpoint,
}

impl LabelView for CalicoPodLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        if let Some(v) = self.endpoint.labels.get(key) {
            return Some(v);
        }
        match key {
            "projectcalico.org/namespace" => self.endpoint.namespace.as_deref(),
            "projectcalico.org/orchestrator" => Some("k8s"),
            "projectcalico.org/serviceaccount" => self.endpoint.service_account.as_deref(),
            _ => None,
        }
    }
}

/// An endpoint's service account as Calico's selectors see it: the object's labels, and its
/// name as `projectcalico.org/name`.
pub struct ServiceAccountLabels<'a> {
    pub endpoint: &'a Endpoint,
}

impl LabelView for ServiceAccountLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        match key {
            "projectcalico.org/name" => self.endpoint.service_account.as_deref(),
            _ => self
                .endpoint
                .service_account_labels
                .get(key)
                .map(String::as_str),
        }
    }
}
