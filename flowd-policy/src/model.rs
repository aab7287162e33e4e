//! The loaded, validated policy model shared by the evaluator and the tools.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::admin::AdminSpec;
use crate::calico::CalicoSpec;
pub use crate::endpoint::NetworkSet;
use crate::k8s::K8sSpec;
pub use crate::rule::{Detail, Direction, RuleAction};

/// Policy kinds, named the way Calico's flow logs name them ("NetworkPolicy"
/// is the Kubernetes one, "CalicoNetworkPolicy" the projectcalico.org one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyKind {
    NetworkPolicy,
    CalicoNetworkPolicy,
    GlobalNetworkPolicy,
    StagedNetworkPolicy,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    /// policy.networking.k8s.io/v1alpha1.
    AdminNetworkPolicy,
    BaselineAdminNetworkPolicy,
    /// policy.networking.k8s.io/v1alpha2, tier Admin or Baseline (the policy's tier says which).
    ClusterNetworkPolicy,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::CalicoNetworkPolicy => "CalicoNetworkPolicy",
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            PolicyKind::StagedNetworkPolicy => "StagedNetworkPolicy",
            PolicyKind::StagedGlobalNetworkPolicy => "StagedGlobalNetworkPolicy",
            PolicyKind::StagedKubernetesNetworkPolicy => "StagedKubernetesNetworkPolicy",
            PolicyKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            PolicyKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
            PolicyKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
        }
    }

    pub fn is_staged(self) -> bool {
        matches!(
            self,
            PolicyKind::StagedNetworkPolicy
                | PolicyKind::StagedGlobalNetworkPolicy
                | PolicyKind::StagedKubernetesNetworkPolicy
        )
    }

    /// The cluster-scoped kinds of the SIG Network policy API.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            PolicyKind::AdminNetworkPolicy
                | PolicyKind::BaselineAdminNetworkPolicy
                | PolicyKind::ClusterNetworkPolicy
        )
    }

    /// The enforced kind a staged kind would become (itself when not staged).
    pub fn enforced(self) -> PolicyKind {
        match self {
            PolicyKind::StagedNetworkPolicy => PolicyKind::CalicoNetworkPolicy,
            PolicyKind::StagedGlobalNetworkPolicy => PolicyKind::GlobalNetworkPolicy,
            PolicyKind::StagedKubernetesNetworkPolicy => PolicyKind::NetworkPolicy,
            k => k,
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names a policy in results.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyRef {
    pub kind: PolicyKind,
    pub tier: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl PolicyRef {
    /// "NS/NAME" for namespaced policies, "NAME" for global ones.
    pub fn qualified_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (tier {})",
            self.kind,
            self.qualified_name(),
            self.tier
        )
    }
}

/// `spec.stagedAction` of staged kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StagedAction {
    Set,
    Delete,
}

#[derive(Debug, Clone)]
pub enum PolicyBody {
    Kubernetes(K8sSpec),
    Calico(CalicoSpec),
    Admin(AdminSpec),
}

/// One loaded policy of any supported kind.
#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: PolicyKind,
    pub name: String,
    /// `None` for the global kinds.
    pub namespace: Option<String>,
    pub tier: String,
    /// `None` sorts last ("infinite" in Calico terms).
    pub order: Option<f64>,
    pub ingress: bool,
    pub egress: bool,
    pub body: PolicyBody,
    pub staged_action: Option<StagedAction>,
    /// Where it came from, for messages: "file: Kind ns/name".
    pub origin: String,
    /// The object as loaded, as YAML (kind, name, labels and spec; no status or managed
    /// fields), for showing next to the flows it decided.
    pub text: std::sync::Arc<str>,
}

impl Policy {
    pub fn reference(&self) -> PolicyRef {
        PolicyRef {
            kind: self.kind,
            tier: self.tier.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The name Felix sorts by when orders tie: "ns/name" for namespaced
    /// policies, "ns/knp.default.name" for Kubernetes ones, "name" for global.
    pub fn sort_name(&self) -> String {
        match (&self.namespace, self.kind.enforced()) {
            (Some(ns), PolicyKind::NetworkPolicy) => format!("{ns}/knp.default.{}", self.name),
            (Some(ns), _) => format!("{ns}/{}", self.name),
            (None, _) => self.name.clone(),
        }
    }

    /// The name of rule `index` of direction `dir`, when the policy's kind names rules.
    pub fn rule_name(&self, dir: Direction, index: i32) -> Option<&str> {
        let PolicyBody::Admin(spec) = &self.body else {
            return None;
        };
        let index = usize::try_from(index).ok()?;
        spec.rules(dir).get(index)?.name.as_deref()
    }

    /// Identity used to pair a staged policy with the enforced one it replaces.
    pub fn identity(&self) -> (PolicyKind, Option<String>, String) {
        (
            self.kind.enforced(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }
}

/// What a tier does with traffic that its policies select but do not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TierDefaultAction {
    Deny,
    Pass,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub name: String,
    pub order: Option<f64>,
    pub default_action: TierDefaultAction,
}

/// Calico gives the built-in "default" tier this order (api/pkg/apis/projectcalico/v3/tier.go).
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// Calico puts Kubernetes NetworkPolicies in the default tier with this order.
pub const K8S_POLICY_ORDER: f64 = 1000.0;
pub const DEFAULT_TIER: &str = "default";

/// Everything loaded: policies (enforced and staged), tiers and network sets.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
    pub tiers: Vec<Tier>,
    pub network_sets: Vec<NetworkSet>,
}

impl PolicySet {
    pub fn extend(&mut self, other: PolicySet) {
        self.policies.extend(other.policies);
        self.tiers.extend(other.tiers);
        self.network_sets.extend(other.network_sets);
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.tiers.is_empty() && self.network_sets.is_empty()
    }

    pub fn find(&self, namespace: Option<&str>, name: &str) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|p| p.namespace.as_deref() == namespace && p.name == name)
    }
}
