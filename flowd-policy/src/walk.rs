//! The tier walk behind every evaluation (see `eval` for the rules it follows).

use std::collections::HashMap;

use crate::decision::{Ruling, SideDecision, TraceStep};
use crate::endpoint::{Endpoint, FlowRef};
use crate::index::Compiled;
use crate::model::{
    Detail, Direction, Policy, PolicyBody, PolicySet, RuleAction, StagedAction, TierDefaultAction,
};

/// The enforced set as it would be with the staged policies applied: `Set`
/// adds or replaces the same-named enforced policy, `Delete` removes it.
pub(crate) fn apply_staged(set: &PolicySet) -> Vec<Policy> {
    let mut out: Vec<Policy> = Vec::new();
    let mut pos: HashMap<_, usize> = HashMap::new();
    for p in set.policies.iter().filter(|p| !p.kind.is_staged()) {
        pos.insert(p.identity(), out.len());
        out.push(p.clone());
    }
    let mut removed = vec![false; out.len()];
    for s in set.policies.iter().filter(|p| p.kind.is_staged()) {
        let existing = pos.get(&s.identity()).copied();
        match (s.staged_action.unwrap_or(StagedAction::Set), existing) {
            (StagedAction::Set, Some(i)) => {
                out[i] = s.clone();
                removed[i] = false;
            }
            (StagedAction::Set, None) => {
                pos.insert(s.identity(), out.len());
                out.push(s.clone());
                removed.push(false);
            }
            (StagedAction::Delete, Some(i)) => removed[i] = true,
            (StagedAction::Delete, None) => {}
        }
    }
    out.into_iter()
        .zip(removed)
        .filter(|(_, r)| !r)
        .map(|(p, _)| p)
        .collect()
}

pub(crate) fn decide_both(
    c: &Compiled,
    q: &FlowRef<'_>,
    d: Detail,
) -> (SideDecision, SideDecision) {
    (
        decide_side(c, q.source, Direction::Egress, q, d),
        decide_side(c, q.destination, Direction::Ingress, q, d),
    )
}

fn selects(p: &Policy, ep: &Endpoint, d: Detail) -> Result<(), String> {
    match &p.body {
        PolicyBody::Kubernetes(s) => s.selects(p.namespace.as_deref().unwrap_or("default"), ep, d),
        PolicyBody::Calico(s) => s.selects(p.namespace.as_deref(), ep, d),
        PolicyBody::Admin(s) => s.selects(ep, d),
    }
}

/// Walk one policy's rules: the first terminal match, and (with detail) notes
/// on the rules that did not match.
fn match_rules(
    p: &Policy,
    dir: Direction,
    q: &FlowRef<'_>,
    d: Detail,
) -> (Option<(i32, RuleAction)>, Vec<String>) {
    let mut notes = Vec::new();
    let mut note = |f: &dyn Fn() -> String| {
        if d.0 {
            notes.push(f());
        }
    };
    let idx = |i: usize| i32::try_from(i).unwrap_or(i32::MAX);
    let outcome = match &p.body {
        PolicyBody::Kubernetes(s) => {
            let rules = s.rules(dir);
            if rules.is_empty() {
                note(&|| format!("no {dir} rules: selected pods are isolated"));
            }
            let ns = p.namespace.as_deref().unwrap_or("default");
            let mut found = None;
            for (i, r) in rules.iter().enumerate() {
                match r.matches(dir, ns, q, d) {
                    Ok(()) => {
                        found = Some((idx(i), RuleAction::Allow));
                        break;
                    }
                    Err(why) => note(&|| format!("rule {i}: {why}")),
                }
            }
            found
        }
        PolicyBody::Calico(s) => {
            let rules = s.rules(dir);
            if rules.is_empty() {
                note(&|| format!("no {dir} rules"));
            }
            let mut found = None;
            for (i, r) in rules.iter().enumerate() {
                match r.matches(q, d) {
                    // Log never decides; it is always worth a note.
                    Ok(()) if r.action == RuleAction::Log => {
                        note(&|| format!("rule {i}: matched, Log (evaluation continues)"));
                    }
                    Ok(()) => {
                        found = Some((idx(i), r.action));
                        break;
                    }
                    Err(why) => note(&|| format!("rule {i}: {why}")),
                }
            }
            found
        }
        PolicyBody::Admin(s) => {
            let rules = s.rules(dir);
            let mut found = None;
            for (i, r) in rules.iter().enumerate() {
                match r.matches(dir, q, d) {
                    Ok(()) => {
                        found = Some((idx(i), r.action));
                        break;
                    }
                    Err(why) => note(&|| match &r.name {
                        Some(name) => format!("rule {i} ({name}): {why}"),
                        None => format!("rule {i}: {why}"),
                    }),
                }
            }
            found
        }
    };
    (outcome, notes)
}

fn decide_side(
    c: &Compiled,
    ep: &Endpoint,
    dir: Direction,
    q: &FlowRef<'_>,
    d: Detail,
) -> SideDecision {
    let Some(ns) = ep.pod_namespace() else {
        return SideDecision::open(Ruling::NotApplicable, Vec::new());
    };
    let list = c.candidates(ns);
    let mut trace = Vec::new();
    let mut any_tier_applied = false;
    let mut i = 0;
    while i < list.len() {
        let tier_idx = c.tier_of[list[i]];
        let mut end = i;
        while end < list.len() && c.tier_of[list[end]] == tier_idx {
            end += 1;
        }
        let mut last_selecting: Option<&Policy> = None;
        let mut passed = false;
        for &pi in &list[i..end] {
            let p = &c.policies[pi];
            let applies = match dir {
                Direction::Ingress => p.ingress,
                Direction::Egress => p.egress,
            };
            let why_not = match selects(p, ep, d) {
                Err(why) => Some(why),
                Ok(()) if !applies => Some(d.why(|| format!("policy types do not include {dir}"))),
                Ok(()) => None,
            };
            if let Some(why) = why_not {
                // Only explain() lists the policies that did not select the endpoint.
                if d.0 {
                    trace.push(TraceStep::Policy {
                        policy: p.reference(),
                        selected: false,
                        rule: None,
                        action: None,
                        notes: vec![why],
                    });
                }
                continue;
            }
            last_selecting = Some(p);
            let (outcome, notes) = match_rules(p, dir, q, d);
            trace.push(TraceStep::Policy {
                policy: p.reference(),
                selected: true,
                rule: outcome.map(|o| o.0),
                action: outcome.map(|o| o.1),
                notes,
            });
            match outcome {
                Some((rule, RuleAction::Allow)) | Some((rule, RuleAction::Deny)) => {
                    let allowed = matches!(outcome, Some((_, RuleAction::Allow)));
                    return SideDecision {
                        allowed,
                        policy: Some(p.reference()),
                        rule: Some(rule),
                        rule_name: p.rule_name(dir, rule).map(str::to_string),
                        ruling: if allowed { Ruling::Allow } else { Ruling::Deny },
                        trace,
                    };
                }
                Some((_, RuleAction::Pass)) => {
                    passed = true;
                    break;
                }
                _ => {}
            }
        }
        if passed {
            any_tier_applied = true;
        } else if let Some(last) = last_selecting {
            any_tier_applied = true;
            let (tier, action) = c
                .tiers
                .get(tier_idx)
                .map(|t| (t.name.clone(), t.default_action))
                .unwrap_or_else(|| (last.tier.clone(), TierDefaultAction::Deny));
            trace.push(TraceStep::EndOfTier { tier, action });
            if action == TierDefaultAction::Deny {
                return SideDecision {
                    allowed: false,
                    policy: Some(last.reference()),
                    rule: Some(-1),
                    rule_name: None,
                    ruling: Ruling::EndOfTierDeny,
                    trace,
                };
            }
        }
        i = end;
    }
    SideDecision::open(
        if any_tier_applied {
            Ruling::ProfileAllow
        } else {
            Ruling::NoPolicy
        },
        trace,
    )
}
