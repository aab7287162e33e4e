//! What the policy stage attaches to a record: each side's deciding policy and rule.

use flowd_policy::{PolicyRef, Ruling};

/// One side's decision as a record carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideVerdict {
    pub allowed: bool,
    pub policy: Option<PolicyRef>,
    pub rule: Option<i32>,
    /// The rule's name, for kinds that name rules (the admin policy API).
    pub rule_name: Option<String>,
    /// How the side was decided (a rule's allow or deny, end of tier, no policy...).
    pub ruling: Ruling,
    /// The policies that selected the endpoint, in evaluation order, and each tier's end:
    /// `flowd policy explain` prints the full walk including policies that did not select it.
    pub trace: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyVerdict {
    pub egress: SideVerdict,
    pub ingress: SideVerdict,
}

impl PolicyVerdict {
    pub fn allowed(&self) -> bool {
        self.egress.allowed && self.ingress.allowed
    }

    /// The side that denied, else the ingress decision (the destination's policy).
    pub fn deciding(&self) -> &SideVerdict {
        if !self.egress.allowed {
            &self.egress
        } else {
            &self.ingress
        }
    }
}
