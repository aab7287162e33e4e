//! What evaluation decides, per side and for a flow: the types the tier walk produces and the
//! engine returns. A leaf below both (`walk` and `eval` import it).

use serde::{Deserialize, Serialize};

use crate::model::{PolicyRef, RuleAction, TierDefaultAction};

/// How one side was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ruling {
    /// A rule with action Allow matched.
    Allow,
    /// A rule with action Deny matched.
    Deny,
    /// Policies of a tier selected the endpoint but none decided: the tier's
    /// default deny (rule -1).
    EndOfTierDeny,
    /// No policy selects the endpoint in this direction: not isolated.
    NoPolicy,
    /// Passed beyond the last tier to the pod's profile, which allows.
    ProfileAllow,
    /// The endpoint is not a pod, so this side is not policed.
    NotApplicable,
}

impl Ruling {
    /// The name the API and logs show.
    pub fn as_str(self) -> &'static str {
        match self {
            Ruling::Allow => "Allow",
            Ruling::Deny => "Deny",
            Ruling::EndOfTierDeny => "EndOfTierDeny",
            Ruling::NoPolicy => "NoPolicy",
            Ruling::ProfileAllow => "ProfileAllow",
            Ruling::NotApplicable => "NotApplicable",
        }
    }
}

/// One step of the walk. `evaluate` records the policies that selected the
/// endpoint (and ends of tiers); `explain` records every policy considered,
/// with notes on why it did not select or why its rules did not match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TraceStep {
    Policy {
        policy: PolicyRef,
        /// Selects the endpoint and applies in this direction.
        selected: bool,
        /// The rule that matched (Log rules do not stop the walk and are only noted).
        rule: Option<i32>,
        action: Option<RuleAction>,
        /// Why it did not select, or why each rule did not match.
        notes: Vec<String>,
    },
    EndOfTier {
        tier: String,
        action: TierDefaultAction,
    },
}

/// The decision for one direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideDecision {
    pub allowed: bool,
    /// The deciding policy; for an end-of-tier deny, the last policy of that
    /// tier that selected the endpoint. `None` when no policy decided.
    pub policy: Option<PolicyRef>,
    /// Index into the policy's rules for this direction; -1 for end of tier.
    pub rule: Option<i32>,
    /// The rule's own name, for kinds that name rules (the admin policy API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    /// Serialized as `action`, the name `flowd policy` output has always used.
    #[serde(rename = "action")]
    pub ruling: Ruling,
    pub trace: Vec<TraceStep>,
}

impl SideDecision {
    pub(crate) fn open(ruling: Ruling, trace: Vec<TraceStep>) -> SideDecision {
        SideDecision {
            allowed: true,
            policy: None,
            rule: None,
            rule_name: None,
            ruling,
            trace,
        }
    }
}

/// What staged policies would do if they were enforced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingDecision {
    pub allowed: bool,
    pub egress: SideDecision,
    pub ingress: SideDecision,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub allowed: bool,
    pub egress: SideDecision,
    pub ingress: SideDecision,
    /// Present when staged policies exist; never changes `allowed`.
    pub pending: Option<PendingDecision>,
}
