//! The vocabulary rules of every policy kind share: direction, action, and how matchers explain
//! themselves. A leaf: the policy kinds and the model import it, it imports none of them.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    Ingress,
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleAction {
    Allow,
    Deny,
    Pass,
    Log,
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleAction::Allow => "Allow",
            RuleAction::Deny => "Deny",
            RuleAction::Pass => "Pass",
            RuleAction::Log => "Log",
        })
    }
}

/// Whether matchers should explain mismatches. Explanations cost allocations,
/// so the hot path asks for none and `explain` asks for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detail(pub bool);

impl Detail {
    /// The reason text when details are wanted, else an empty (non-allocating) string.
    #[inline]
    pub fn why(self, f: impl FnOnce() -> String) -> String {
        if self.0 {
            f()
        } else {
            String::new()
        }
    }
}

/// Items as a comma-separated list, for the Display of rules and peers.
pub(crate) fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
