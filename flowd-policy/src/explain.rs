//! Human-readable rendering of evaluations, for `flowd policy explain`.

use std::fmt::Write;

use crate::endpoint::FlowQuery;
use crate::eval::{Evaluation, Ruling, SideDecision, TraceStep};
use crate::model::TierDefaultAction;

/// One line naming what decided a side, e.g.
/// "denied by CalicoNetworkPolicy fme/default-deny (tier default) rule -1 (end of tier)".
pub fn summary(side: &SideDecision) -> String {
    let who = side
        .policy
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let rule = match &side.rule_name {
        Some(name) => format!("{} ({name})", side.rule.unwrap_or(0)),
        None => side.rule.unwrap_or(0).to_string(),
    };
    match side.ruling {
        Ruling::Allow => format!("allowed by {who} rule {rule}"),
        Ruling::Deny => format!("denied by {who} rule {rule}"),
        Ruling::EndOfTierDeny => {
            format!("denied by {who} rule -1 (end of tier: no rule matched)")
        }
        Ruling::NoPolicy => "allowed: no policy selects the endpoint (not isolated)".into(),
        Ruling::ProfileAllow => "allowed: passed beyond the last tier to the profile".into(),
        Ruling::NotApplicable => "not policed: endpoint is not a pod".into(),
    }
}

fn side_text(out: &mut String, title: &str, side: &SideDecision) {
    let _ = writeln!(out, "{title}: {}", summary(side));
    for step in &side.trace {
        match step {
            TraceStep::Policy {
                policy,
                selected,
                rule,
                action,
                notes,
            } => {
                let head = match (selected, rule, action) {
                    (false, _, _) => "not selected".to_string(),
                    (true, Some(r), Some(a)) => format!("selected, rule {r} matched: {a}"),
                    _ => "selected, no rule matched".to_string(),
                };
                let _ = writeln!(out, "  - {policy}: {head}");
                for n in notes {
                    let _ = writeln!(out, "      {n}");
                }
            }
            TraceStep::EndOfTier { tier, action } => {
                let a = match action {
                    TierDefaultAction::Deny => "Deny",
                    TierDefaultAction::Pass => "Pass",
                };
                let _ = writeln!(out, "  - end of tier {tier}: {a}");
            }
        }
    }
}

/// A multi-line explanation of an evaluation.
pub fn explain(q: &FlowQuery, e: &Evaluation) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{} {} -> {} {}/{}",
        if e.allowed { "ALLOWED" } else { "DENIED" },
        q.source.display_name(),
        q.destination.display_name(),
        q.protocol,
        q.port
    );
    if let Some(port) = q.source_port {
        let _ = write!(out, " from port {port}");
    }
    if let Some(icmp) = q.icmp {
        let _ = write!(out, " type {} code {}", icmp.kind, icmp.code);
    }
    out.push('\n');
    side_text(&mut out, "egress (at source)", &e.egress);
    side_text(&mut out, "ingress (at destination)", &e.ingress);
    if let Some(p) = &e.pending {
        let _ = writeln!(
            out,
            "pending (staged policies applied): {}",
            if p.allowed { "ALLOWED" } else { "DENIED" }
        );
        side_text(&mut out, "  pending egress", &p.egress);
        side_text(&mut out, "  pending ingress", &p.ingress);
    }
    out
}
