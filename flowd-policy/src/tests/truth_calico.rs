//! Truth table: Calico NetworkPolicy / GlobalNetworkPolicy rule semantics.

use super::helpers::*;
use crate::endpoint::{Endpoint, Protocol};

const RULE_ORDER: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Log
    protocol: TCP
  - action: Deny
    source: {selector: app == 'api'}
  - action: Allow
    protocol: TCP
    destination: {ports: [5432]}
"#;

const POLICY_ORDER: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-web, namespace: prod}
spec:
  order: 20
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'web'}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-web, namespace: prod}
spec:
  order: 10
  selector: app == 'db'
  ingress:
  - action: Deny
    source: {selector: app == 'web'}
"#;

const NO_ORDER_IS_LAST: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a-allow, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: z-deny, namespace: prod}
spec:
  order: 1000000
  selector: app == 'db'
  ingress:
  - action: Deny
"#;

const ORDER_TIE: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: b-allow, namespace: prod}
spec:
  order: 10
  selector: app == 'db'
  ingress:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a-deny, namespace: prod}
spec:
  order: 10
  selector: app == 'db'
  ingress:
  - action: Deny
"#;

const DEFAULT_TYPES: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: only-egress-rules, namespace: prod}
spec:
  selector: app == 'web'
  egress:
  - action: Allow
    destination: {selector: app == 'db'}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: no-rules, namespace: prod}
spec:
  selector: app == 'api'
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: both-rules, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'web'}
  egress:
  - action: Allow
    destination: {nets: [8.8.8.8/32]}
"#;

const EXPLICIT_EGRESS_TYPE: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  types: [Egress]
  ingress:
  - action: Deny
"#;

const GNP_ALL_NS: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-tool}
spec:
  selector: app == 'tool' || app == 'db'
  ingress:
  - action: Deny
    source: {selector: app == 'web'}
  - action: Allow
"#;

const GNP_NS_SELECTOR: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: dev-lockdown}
spec:
  namespaceSelector: env == 'dev'
  selector: all()
  types: [Ingress]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: mon-by-name}
spec:
  namespaceSelector: projectcalico.org/name == 'mon'
  types: [Egress]
"#;

const RULE_SCOPES: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'web'}
  - action: Allow
    source:
      namespaceSelector: env == 'dev'
      selector: app == 'tool'
  - action: Allow
    source:
      namespaceSelector: all()
      selector: app == 'prometheus'
"#;

const GNP_RULE_SCOPE: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'web'}
"#;

const NOT_SELECTOR_NS: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {notSelector: app == 'api'}
"#;

const NOT_SELECTOR_GLOBAL: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {notSelector: app == 'api'}
"#;

const NETS: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source:
      nets: [203.0.113.0/24, 10.0.0.0/8]
      notNets: [203.0.113.5/32, 10.0.1.3]
"#;

const PORT_FORMS: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: ['7070', '42000:43000', pg]
      notPorts: [42500]
  - action: Allow
    protocol: 17
    destination: {ports: [53]}
  - action: Allow
    notProtocol: TCP
    protocol: ICMP
"#;

const SERVICE_ACCOUNTS: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source:
      serviceAccounts: {names: [web-sa]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: sa-scoped, namespace: prod}
spec:
  order: 1
  selector: all()
  serviceAccountSelector: projectcalico.org/name == 'web-sa'
  egress:
  - action: Deny
    destination: {nets: [8.8.8.8/32]}
  - action: Allow
"#;

/// Service accounts by their object's labels (Calico's `serviceAccounts.selector` and the
/// policy's `serviceAccountSelector` select on them), and by name together with them.
const SERVICE_ACCOUNT_LABELS: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source:
      serviceAccounts: {selector: "tier == 'backend'"}
  - action: Allow
    source:
      serviceAccounts: {names: [web-sa], selector: "tier == 'frontend'"}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: audited-accounts}
spec:
  order: 1
  selector: all()
  serviceAccountSelector: has(audited)
  types: [Egress]
  egress:
  - action: Deny
    destination: {nets: [8.8.8.8/32]}
  - action: Allow
"#;

fn with_account_labels(ep: Endpoint, labels: &[(&str, &str)]) -> Endpoint {
    labels
        .iter()
        .fold(ep, |ep, (k, v)| ep.with_service_account_label(k, v))
}

const MISC_RULES: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: has(app) && app in {'db', 'cache'}
  ingress:
  - action: Allow
    ipVersion: 6
  - action: Allow
    protocol: TCP
    source: {ports: [1000]}
  - action: Allow
    protocol: ICMP
    icmp: {type: 8}
  - action: Allow
    protocol: TCP
    http: {methods: [GET]}
    destination: {ports: [8080]}
  - action: Allow
    source: {selector: "projectcalico.org/namespace == 'dev'", namespaceSelector: all()}
"#;

// --- rule order and actions -------------------------------------------------------

case!(log_does_not_terminate_and_later_allow_wins: RULE_ORDER, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 2));
case!(first_matching_rule_wins_deny_before_allow: RULE_ORDER, tcp(&prod_api(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", 1));
case!(no_rule_matches_gives_end_of_tier_deny: RULE_ORDER, tcp(&prod_web(), &prod_db(), 80)
    => egress open(), ingress by(false, "prod/db", -1));
case!(lower_order_policy_first: POLICY_ORDER, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/deny-web", 0));
case!(lower_order_policy_falls_through_when_no_match: POLICY_ORDER, tcp(&prod_api(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/allow-web", -1));
case!(missing_order_sorts_after_any_order: NO_ORDER_IS_LAST, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/z-deny", 0));
case!(order_ties_broken_by_name: ORDER_TIE, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/a-deny", 0));

// --- types defaults --------------------------------------------------------------

case!(types_default_egress_only_when_only_egress_rules: DEFAULT_TYPES, tcp(&prod_api(), &prod_web(), 80)
    => egress open(), ingress open());
case!(types_default_egress_rules_allow: DEFAULT_TYPES, tcp(&prod_web(), &prod_db(), 5432)
    => egress by(true, "prod/only-egress-rules", 0), ingress by(true, "prod/both-rules", 0));
case!(types_default_ingress_when_no_rules: DEFAULT_TYPES, tcp(&prod_web(), &prod_api(), 80)
    => egress by(false, "prod/only-egress-rules", -1), ingress by(false, "prod/no-rules", -1));
case!(types_default_both_when_both_rules: DEFAULT_TYPES, udp(&prod_db(), &dev_web(), 53)
    => egress by(false, "prod/both-rules", -1), ingress open());
case!(explicit_egress_type_ignores_ingress_rules: EXPLICIT_EGRESS_TYPE, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress open());
case!(explicit_egress_type_isolates_egress: EXPLICIT_EGRESS_TYPE, tcp(&prod_db(), &prod_web(), 80)
    => egress by(false, "prod/db", -1), ingress open());

// --- global policies and scopes ----------------------------------------------------------

case!(gnp_selects_across_namespaces: GNP_ALL_NS, tcp(&dev_web(), &dev_tool(), 80)
    => egress open(), ingress by(false, "deny-tool", 0));
case!(gnp_rule_selector_matches_any_namespace: GNP_ALL_NS, tcp(&prod_web(), &dev_tool(), 80)
    => egress open(), ingress by(false, "deny-tool", 0));
case!(gnp_later_rule_allows: GNP_ALL_NS, tcp(&mon_prom(), &prod_db(), 80)
    => egress open(), ingress by(true, "deny-tool", 1));
case!(gnp_namespace_selector_limits_selection: GNP_NS_SELECTOR, tcp(&prod_web(), &prod_api(), 80)
    => egress open(), ingress open());
case!(gnp_namespace_selector_selects_matching_namespace: GNP_NS_SELECTOR, tcp(&prod_web(), &dev_web(), 80)
    => egress open(), ingress by(false, "dev-lockdown", -1));
case!(gnp_namespace_selector_by_projectcalico_name: GNP_NS_SELECTOR, tcp(&mon_prom(), &prod_db(), 9187)
    => egress by(false, "mon-by-name", -1), ingress open());
case!(rule_selector_without_namespace_selector_is_same_namespace: RULE_SCOPES, tcp(&dev_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(rule_selector_same_namespace_matches: RULE_SCOPES, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(rule_namespace_selector_widens_scope: RULE_SCOPES, tcp(&dev_tool(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 1));
case!(rule_namespace_selector_all_means_any_namespace: RULE_SCOPES, tcp(&mon_prom(), &prod_db(), 9187)
    => egress open(), ingress by(true, "prod/db", 2));
case!(gnp_rule_selector_without_namespace_selector_any_namespace: GNP_RULE_SCOPE, tcp(&dev_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "db", 0));
case!(not_selector_in_namespaced_policy_limits_to_namespace: NOT_SELECTOR_NS, tcp(&dev_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(not_selector_in_namespaced_policy_allows_others_there: NOT_SELECTOR_NS, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(not_selector_excludes_matching: NOT_SELECTOR_NS, tcp(&prod_api(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(not_selector_in_gnp_matches_world: NOT_SELECTOR_GLOBAL, tcp(&world(), &prod_db(), 5432)
    => egress open(), ingress by(true, "db", 0));
case!(not_selector_in_gnp_excludes_matching: NOT_SELECTOR_GLOBAL, tcp(&prod_api(), &prod_db(), 5432)
    => egress open(), ingress by(false, "db", -1));

// --- nets, ports, protocols ----------------------------------------------------------------

case!(nets_match: NETS, tcp(&Endpoint::external(ip("203.0.113.9")), &prod_db(), 1)
    => egress open(), ingress by(true, "db", 0));
case!(not_nets_exclude: NETS, tcp(&world(), &prod_db(), 1)
    => egress open(), ingress by(false, "db", -1));
case!(not_nets_bare_ip_excludes_pod: NETS, tcp(&prod_api(), &prod_db(), 1)
    => egress open(), ingress by(false, "db", -1));
case!(nets_match_pod_ip: NETS, tcp(&prod_web(), &prod_db(), 1)
    => egress open(), ingress by(true, "db", 0));
case!(nets_no_match: NETS, tcp(&dns(), &prod_db(), 1)
    => egress open(), ingress by(false, "db", -1));
case!(port_string_number: PORT_FORMS, tcp(&prod_web(), &prod_db(), 7070)
    => egress open(), ingress by(true, "prod/db", 0));
case!(port_range_string_inside: PORT_FORMS, tcp(&prod_web(), &prod_db(), 42001)
    => egress open(), ingress by(true, "prod/db", 0));
case!(port_range_string_bounds: PORT_FORMS, tcp(&prod_web(), &prod_db(), 43000)
    => egress open(), ingress by(true, "prod/db", 0));
case!(port_range_string_outside: PORT_FORMS, tcp(&prod_web(), &prod_db(), 43001)
    => egress open(), ingress by(false, "prod/db", -1));
case!(not_ports_excludes_inside_range: PORT_FORMS, tcp(&prod_web(), &prod_db(), 42500)
    => egress open(), ingress by(false, "prod/db", -1));
case!(named_port_in_calico_rule: PORT_FORMS, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(protocol_number_17_is_udp: PORT_FORMS, udp(&prod_web(), &prod_db(), 53)
    => egress open(), ingress by(true, "prod/db", 1));
case!(protocol_tcp_rule_does_not_match_udp: PORT_FORMS, udp(&prod_web(), &prod_db(), 7070)
    => egress open(), ingress by(false, "prod/db", -1));
case!(icmp_rule_with_not_protocol: PORT_FORMS, flow(&prod_web(), &prod_db(), Protocol::Icmp, 0)
    => egress open(), ingress by(true, "prod/db", 2));

// --- service accounts, misc -----------------------------------------------------------------

case!(service_account_names_match: SERVICE_ACCOUNTS, tcp(&prod_web(), &prod_db(), 5432)
    => egress by(true, "prod/sa-scoped", 1), ingress by(true, "prod/db", 0));
case!(service_account_names_mismatch: SERVICE_ACCOUNTS, tcp(&prod_api(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(service_account_selector_selects_policy_endpoints: SERVICE_ACCOUNTS, udp(&prod_web(), &dns(), 53)
    => egress by(false, "prod/sa-scoped", 0), ingress open());
case!(service_account_selected_by_its_labels: SERVICE_ACCOUNT_LABELS,
    tcp(&with_account_labels(prod_api(), &[("tier", "backend")]), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(service_account_labels_other_value: SERVICE_ACCOUNT_LABELS,
    tcp(&with_account_labels(prod_api(), &[("tier", "batch")]), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(service_account_pod_labels_are_not_account_labels: SERVICE_ACCOUNT_LABELS,
    tcp(&prod_api().with_label("tier", "backend"), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(service_account_name_and_labels_both_needed: SERVICE_ACCOUNT_LABELS,
    tcp(&with_account_labels(prod_web(), &[("tier", "frontend")]), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 1));
case!(service_account_name_without_its_labels: SERVICE_ACCOUNT_LABELS,
    tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(service_account_selector_on_policy_by_labels: SERVICE_ACCOUNT_LABELS,
    udp(&with_account_labels(prod_web(), &[("audited", "yes")]), &dns(), 53)
    => egress by(false, "audited-accounts", 0), ingress open());
case!(service_account_selector_on_policy_not_selected: SERVICE_ACCOUNT_LABELS,
    udp(&prod_web(), &dns(), 53)
    => egress open(), ingress open());

case!(ip_version_rule_does_not_match_ipv4: MISC_RULES, tcp(&mon_prom(), &prod_db(), 80)
    => egress open(), ingress by(false, "prod/db", -1));
case!(source_ports_unknown_never_match: MISC_RULES, tcp(&mon_prom(), &prod_db(), 1000)
    => egress open(), ingress by(false, "prod/db", -1));
case!(icmp_type_unknown_does_not_match: MISC_RULES, flow(&mon_prom(), &prod_db(), Protocol::Icmp, 0)
    => egress open(), ingress by(false, "prod/db", -1));
case!(http_criteria_treated_as_met: MISC_RULES, tcp(&mon_prom(), &prod_db(), 8080)
    => egress open(), ingress by(true, "prod/db", 3));
case!(implicit_calico_namespace_label: MISC_RULES, tcp(&dev_tool(), &prod_db(), 1)
    => egress open(), ingress by(true, "prod/db", 4));

#[test]
fn ipv6_flow_matches_ip_version_6() {
    let src = pod("mon", "p6", "fd00::10", &[("app", "x")]);
    let mut dst = prod_db();
    dst.ip = ip("fd00::2");
    check(
        MISC_RULES,
        &tcp(&src, &dst, 80),
        open(),
        by(true, "prod/db", 0),
    );
}

#[test]
fn log_rule_is_noted_in_trace() {
    let r = explained(RULE_ORDER, &tcp(&prod_web(), &prod_db(), 5432));
    let text = format!("{:?}", r.ingress.trace);
    assert!(text.contains("Log (evaluation continues)"), "{text}");
}
