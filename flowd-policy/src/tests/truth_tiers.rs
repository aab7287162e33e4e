//! Truth table: tiers, Pass, end-of-tier, Kubernetes policies inside Calico's
//! default tier, and staged (pending) policies.

use super::helpers::*;
use crate::eval::Ruling;

const TIERS: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 50}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.quarantine}
spec:
  tier: security
  order: 1
  selector: all()
  ingress:
  - action: Deny
    source: {selector: quarantine == 'true'}
  - action: Pass
    source: {selector: app == 'web'}
  - action: Allow
    source: {selector: app == 'prometheus'}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform.pass-all}
spec:
  tier: platform
  selector: all()
  ingress:
  - action: Pass
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'web'}
"#;

const PASS_TO_PROFILE: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: first}
spec: {order: 10}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: first.pass}
spec:
  tier: first
  selector: app == 'db'
  ingress:
  - action: Pass
"#;

const TIER_ORDERING: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: a-late}
spec: {order: 2000000}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: z-early}
spec: {order: 5}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: unordered}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: late-deny}
spec:
  tier: a-late
  selector: app == 'db'
  ingress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: early}
spec:
  tier: z-early
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'prometheus'}
  - action: Pass
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: unordered-allow}
spec:
  tier: unordered
  selector: app == 'db'
  ingress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: default-allow-web}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'web'}
  - action: Pass
    source: {selector: app == 'api'}
"#;

const TIER_DEFAULT_PASS: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: soft}
spec: {order: 10, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: soft-allow-web}
spec:
  tier: soft
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'web'}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-api, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'api'}
"#;

const EGRESS_ONLY_TIER: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: egress-control}
spec: {order: 10}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: egress-only}
spec:
  tier: egress-control
  selector: all()
  types: [Egress]
  egress:
  - action: Allow
    destination: {nets: [10.0.0.0/8]}
"#;

const K8S_AND_CALICO: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-web-8080, namespace: prod}
spec:
  order: 100
  selector: app == 'db'
  ingress:
  - action: Deny
    protocol: TCP
    destination: {ports: [8080]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: late-allow-api, namespace: prod}
spec:
  order: 2000
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'api'}
  - action: Deny
    source: {selector: app == 'web'}
"#;

const STAGED: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'web'}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'api'}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: web-lockdown, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: deny-tool}
spec:
  selector: app == 'tool'
  types: [Ingress]
"#;

const STAGED_DELETE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: deny-all, namespace: prod}
spec:
  stagedAction: Delete
"#;

// --- tiers and Pass ------------------------------------------------------------------

case!(earlier_tier_deny_wins: TIERS, tcp(&pod("dev", "q", "10.0.2.9", &[("quarantine", "true")]), &prod_db(), 1)
    => egress open(), ingress by(false, "security.quarantine", 0));
case!(pass_skips_to_next_tier_where_allow_matches: TIERS, tcp(&prod_web(), &prod_db(), 1)
    => egress open(), ingress by(true, "prod/db", 0));
case!(pass_then_end_of_default_tier: TIERS, tcp(&prod_web(), &prod_api(), 1)
    => egress open(), ingress (true, None, None));
case!(allow_in_security_tier_is_final: TIERS, tcp(&mon_prom(), &prod_db(), 9187)
    => egress open(), ingress by(true, "security.quarantine", 2));
case!(selected_in_tier_without_match_denies_at_end_of_that_tier: TIERS, tcp(&prod_api(), &prod_db(), 1)
    => egress open(), ingress by(false, "security.quarantine", -1));
case!(pass_in_last_tier_goes_to_profile: PASS_TO_PROFILE, tcp(&prod_web(), &prod_db(), 1)
    => egress open(), ingress open());
case!(lower_tier_order_first: TIER_ORDERING, tcp(&mon_prom(), &prod_db(), 1)
    => egress open(), ingress by(true, "early", 0));
case!(default_tier_before_tier_ordered_after_it: TIER_ORDERING, tcp(&prod_web(), &prod_db(), 1)
    => egress open(), ingress by(true, "default-allow-web", 0));
case!(unordered_tier_after_ordered_tiers: TIER_ORDERING, tcp(&prod_api(), &prod_db(), 1)
    => egress open(), ingress by(false, "late-deny", 0));
case!(end_of_default_tier_before_later_tiers: TIER_ORDERING, tcp(&dev_tool(), &prod_db(), 1)
    => egress open(), ingress by(false, "default-allow-web", -1));
case!(tier_default_action_pass_falls_through: TIER_DEFAULT_PASS, tcp(&prod_api(), &prod_db(), 1)
    => egress open(), ingress by(true, "prod/db-api", 0));
case!(tier_default_action_pass_allow_still_final: TIER_DEFAULT_PASS, tcp(&prod_web(), &prod_db(), 1)
    => egress open(), ingress by(true, "soft-allow-web", 0));
case!(tier_default_pass_then_default_tier_deny: TIER_DEFAULT_PASS, tcp(&dev_tool(), &prod_db(), 1)
    => egress open(), ingress by(false, "prod/db-api", -1));
case!(egress_only_tier_does_not_isolate_ingress: EGRESS_ONLY_TIER, tcp(&world(), &prod_db(), 1)
    => egress open(), ingress open());
case!(egress_only_tier_isolates_egress: EGRESS_ONLY_TIER, tcp(&prod_db(), &world(), 443)
    => egress by(false, "egress-only", -1), ingress open());

// --- Kubernetes policies inside the default tier -----------------------------------------------

case!(calico_order_100_deny_beats_k8s_allow: K8S_AND_CALICO, tcp(&prod_web(), &prod_db(), 8080)
    => egress open(), ingress by(false, "prod/deny-web-8080", 0));
case!(k8s_allow_beats_later_calico_deny: K8S_AND_CALICO, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db-from-web", 0));
case!(later_calico_allow_wins_over_k8s_isolation: K8S_AND_CALICO, tcp(&prod_api(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/late-allow-api", 0));
case!(k8s_isolation_end_of_tier_names_last_policy: K8S_AND_CALICO, tcp(&dev_tool(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/late-allow-api", -1));

// --- staged policies ---------------------------------------------------------------------

#[test]
fn staged_policy_does_not_change_enforced_decision() {
    check(
        STAGED,
        &tcp(&prod_web(), &prod_db(), 5432),
        open(),
        by(true, "prod/db", 0),
    );
}

#[test]
fn staged_replacement_reported_as_pending_deny() {
    let r = eval(STAGED, &tcp(&prod_web(), &prod_db(), 5432));
    let pending = r.pending.expect("pending present");
    assert!(r.allowed);
    assert!(!pending.allowed);
    assert_eq!(side(&pending.ingress), by(false, "prod/db", -1));
    let p = pending.ingress.policy.expect("policy");
    assert_eq!(p.kind, crate::model::PolicyKind::StagedNetworkPolicy);
    // And the staged Kubernetes policy isolates web's egress in the pending view.
    assert_eq!(side(&pending.egress), by(false, "prod/web-lockdown", -1));
}

#[test]
fn staged_replacement_pending_allow() {
    let r = eval(STAGED, &tcp(&prod_api(), &prod_db(), 5432));
    assert!(!r.allowed);
    assert_eq!(side(&r.ingress), by(false, "prod/db", -1));
    let pending = r.pending.expect("pending present");
    assert!(pending.allowed);
    assert_eq!(side(&pending.ingress), by(true, "prod/db", 0));
}

#[test]
fn staged_global_policy_pending_only() {
    let r = eval(STAGED, &tcp(&dev_web(), &dev_tool(), 80));
    assert!(r.allowed);
    assert_eq!(r.ingress.ruling, Ruling::NoPolicy);
    let pending = r.pending.expect("pending");
    assert_eq!(side(&pending.ingress), by(false, "deny-tool", -1));
}

#[test]
fn staged_delete_removes_enforced_policy_in_pending_view() {
    let r = eval(STAGED_DELETE, &tcp(&prod_web(), &prod_db(), 5432));
    assert_eq!(side(&r.ingress), by(false, "prod/deny-all", -1));
    let pending = r.pending.expect("pending");
    assert!(pending.allowed);
    assert_eq!(pending.ingress.ruling, Ruling::NoPolicy);
}

#[test]
fn no_staged_policies_means_no_pending() {
    let r = eval(K8S_AND_CALICO, &tcp(&prod_web(), &prod_db(), 5432));
    assert!(r.pending.is_none());
}

#[test]
fn pass_to_profile_verdict() {
    let r = eval(PASS_TO_PROFILE, &tcp(&prod_web(), &prod_db(), 1));
    assert_eq!(r.ingress.ruling, Ruling::ProfileAllow);
    let r = eval(TIERS, &tcp(&prod_web(), &prod_api(), 1));
    assert_eq!(r.ingress.ruling, Ruling::ProfileAllow);
}

#[test]
fn trace_lists_policies_in_order_with_end_of_tier() {
    let r = explained(TIERS, &tcp(&prod_api(), &prod_db(), 1));
    let text = crate::explain::explain(&tcp(&prod_api(), &prod_db(), 1), &r);
    let q = text
        .find("security.quarantine")
        .expect("security policy in trace");
    let eot = text.find("end of tier security").expect("end of tier step");
    assert!(q < eot, "{text}");
    let ingress = &text[text.find("ingress (at destination)").expect("ingress part")..];
    assert!(
        !ingress.contains("prod/db (tier default)"),
        "default tier not reached:\n{text}"
    );
}

#[test]
fn engine_tier_order() {
    let e = engine(TIER_ORDERING);
    assert_eq!(
        e.tier_order(),
        vec!["z-early", "default", "a-late", "unordered"]
    );
}

#[test]
fn evaluate_traces_only_selecting_policies_explain_traces_all() {
    use crate::eval::TraceStep;
    let q = tcp(&prod_web(), &prod_api(), 1);
    let e = engine(TIERS);
    let lean = e.evaluate(&q);
    let full = e.explain(&q);
    let selected = |t: &[TraceStep]| {
        t.iter()
            .filter(|s| matches!(s, TraceStep::Policy { selected: true, .. }))
            .count()
    };
    assert_eq!(selected(&lean.ingress.trace), selected(&full.ingress.trace));
    assert!(lean.ingress.trace.iter().all(|s| matches!(
        s,
        TraceStep::Policy { selected: true, .. } | TraceStep::EndOfTier { .. }
    )));
    // explain also lists prod/db, which does not select the api pod.
    assert!(full.ingress.trace.len() > lean.ingress.trace.len());
}

#[test]
fn evaluate_keyed_matches_evaluate_and_survives_stale_keys() {
    let e = engine(TIERS);
    let other = engine(TIERS);
    let (s, d) = (prod_web(), prod_db());
    let q = tcp(&s, &d, 1);
    let keyed = e.evaluate_keyed(
        (&s, e.endpoint_key(&s)),
        (&d, e.endpoint_key(&d)),
        q.transport(),
    );
    assert_eq!(*keyed, *e.evaluate(&q));
    // Keys from another engine are recomputed, not trusted.
    let stale = e.evaluate_keyed(
        (&s, other.endpoint_key(&s)),
        (&d, other.endpoint_key(&d)),
        crate::Transport::new(q.protocol, 2),
    );
    assert_eq!(*stale, e.evaluate_uncached(&tcp(&s, &d, 2)));
}

const PASS_SKIPS_REST_OF_TIER: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: first}
spec: {order: 10}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a-pass-web}
spec:
  tier: first
  order: 1
  selector: app == 'db'
  ingress:
  - action: Pass
    source: {selector: app == 'web'}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: b-deny-all}
spec:
  tier: first
  order: 2
  selector: app == 'db'
  ingress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: default-allow}
spec:
  selector: app == 'db'
  ingress: [{action: Allow}]
"#;

case!(pass_skips_later_policies_of_the_same_tier: PASS_SKIPS_REST_OF_TIER, tcp(&prod_web(), &prod_db(), 1)
    => egress open(), ingress by(true, "default-allow", 0));
case!(without_pass_the_later_deny_applies: PASS_SKIPS_REST_OF_TIER, tcp(&prod_api(), &prod_db(), 1)
    => egress open(), ingress by(false, "b-deny-all", 0));
