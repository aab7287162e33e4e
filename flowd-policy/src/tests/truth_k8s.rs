//! Truth table: Kubernetes NetworkPolicy semantics.

use super::helpers::*;
use crate::endpoint::Protocol;

const DENY_ALL_INGRESS_PROD: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"#;

const DB_FROM_WEB: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
"#;

const DB_FROM_DEV_NS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: dev}}
"#;

// namespaceSelector AND podSelector: one peer.
const ONE_PEER: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: dev}}
      podSelector: {matchLabels: {app: web}}
"#;

// namespaceSelector OR podSelector: two peers.
const TWO_PEERS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: dev}}
    - podSelector: {matchLabels: {app: web}}
"#;

const ANY_NS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {}
"#;

const ANY_NS_WEB: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {}
      podSelector: {matchLabels: {app: web}}
"#;

const NS_BY_NAME: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: mon}}
"#;

const ALLOW_ALL_RULE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - {}
"#;

const IPBLOCK: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - ipBlock:
        cidr: 203.0.113.0/24
        except: [203.0.113.4/30]
    - ipBlock: {cidr: 10.0.1.0/28}
"#;

const PORTS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports:
    - port: 5432
    - protocol: UDP
      port: 53
    - protocol: SCTP
      port: 3868
    - protocol: TCP
      port: 32000
      endPort: 32768
"#;

const ANY_UDP_PORT: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports:
    - protocol: UDP
"#;

const NAMED_PORT_INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports:
    - port: pg
  - ports:
    - port: metrics
      protocol: UDP
"#;

const NAMED_PORT_EGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - ports:
    - port: pg
"#;

const EGRESS_RULES_NO_TYPES: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
  - to:
    - podSelector: {matchLabels: {app: db}}
"#;

const EGRESS_ONLY_DENY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: no-egress, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
"#;

const EGRESS_WORLD_EXCEPT_CLUSTER: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-out, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except: [10.0.0.0/8]
"#;

const UNION: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-api, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
"#;

const PEER_AND_PORT: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}]
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 8080}]
"#;

const EXPRESSIONS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector:
        matchExpressions:
        - {key: app, operator: In, values: [web, api]}
        - {key: role, operator: NotIn, values: [batch]}
  - from:
    - namespaceSelector:
        matchExpressions:
        - {key: team, operator: Exists}
  - from:
    - namespaceSelector:
        matchExpressions:
        - {key: env, operator: DoesNotExist}
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: [mon]}
"#;

const ROLE_NOT_BACKEND: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector:
        matchExpressions:
        - {key: role, operator: NotIn, values: [backend]}
"#;

// --- isolation and selection -------------------------------------------------

case!(no_policy_allows_everything: "", tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress open());
case!(policy_in_other_namespace_does_not_isolate: DB_FROM_WEB, tcp(&dev_web(), &dev_tool(), 80)
    => egress open(), ingress open());
case!(empty_pod_selector_isolates_all_pods_in_namespace: DENY_ALL_INGRESS_PROD, tcp(&prod_api(), &prod_web(), 80)
    => egress open(), ingress by(false, "prod/deny-ingress", -1));
case!(ingress_isolation_leaves_egress_open: DENY_ALL_INGRESS_PROD, tcp(&prod_web(), &dev_web(), 80)
    => egress open(), ingress open());
case!(unselected_pod_is_not_isolated: DB_FROM_WEB, tcp(&prod_api(), &prod_web(), 80)
    => egress open(), ingress open());
case!(pod_selector_peer_allows_matching_pod: DB_FROM_WEB, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(pod_selector_peer_denies_other_pod: DB_FROM_WEB, tcp(&prod_api(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(pod_selector_alone_is_same_namespace_only: DB_FROM_WEB, tcp(&dev_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(namespace_selector_alone_allows_all_pods_there: DB_FROM_DEV_NS, tcp(&dev_tool(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(namespace_selector_alone_excludes_own_namespace: DB_FROM_DEV_NS, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(one_peer_ns_and_pod_allows_both_matching: ONE_PEER, tcp(&dev_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(one_peer_ns_and_pod_denies_pod_mismatch: ONE_PEER, tcp(&dev_tool(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(one_peer_ns_and_pod_denies_namespace_mismatch: ONE_PEER, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(two_peers_namespace_peer_allows_any_pod_there: TWO_PEERS, tcp(&dev_tool(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(two_peers_pod_peer_allows_same_namespace_pod: TWO_PEERS, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(two_peers_deny_pod_matching_neither: TWO_PEERS, tcp(&mon_prom(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(empty_namespace_selector_matches_all_namespaces: ANY_NS, tcp(&mon_prom(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(empty_namespace_selector_does_not_match_world: ANY_NS, tcp(&world(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(empty_namespace_selector_with_pod_selector_any_ns: ANY_NS_WEB, tcp(&dev_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(empty_namespace_selector_with_pod_selector_filters_pods: ANY_NS_WEB, tcp(&mon_prom(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(namespace_selected_by_metadata_name_label: NS_BY_NAME, tcp(&mon_prom(), &prod_db(), 9187)
    => egress open(), ingress by(true, "prod/db", 0));
case!(empty_rule_allows_world: ALLOW_ALL_RULE, tcp(&world(), &prod_db(), 1)
    => egress open(), ingress by(true, "prod/db", 0));

// --- ipBlock -----------------------------------------------------------------

case!(ip_block_allows_address_in_cidr: IPBLOCK, tcp(&crate::endpoint::Endpoint::external(ip("203.0.113.77")), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(ip_block_except_excludes_address: IPBLOCK, tcp(&world(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(ip_block_matches_pod_ips: IPBLOCK, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(ip_block_outside_cidr_denied: IPBLOCK, tcp(&dns(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(egress_ip_block_allows_world: EGRESS_WORLD_EXCEPT_CLUSTER, udp(&prod_web(), &dns(), 53)
    => egress by(true, "prod/web-out", 0), ingress open());
case!(egress_ip_block_except_blocks_cluster: EGRESS_WORLD_EXCEPT_CLUSTER, tcp(&prod_web(), &prod_db(), 5432)
    => egress by(false, "prod/web-out", -1), ingress open());

// --- ports ---------------------------------------------------------------------

case!(numeric_port_allowed: PORTS, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(other_port_denied: PORTS, tcp(&prod_web(), &prod_db(), 5433)
    => egress open(), ingress by(false, "prod/db", -1));
case!(port_protocol_defaults_to_tcp: PORTS, udp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(udp_port_allowed: PORTS, udp(&prod_web(), &prod_db(), 53)
    => egress open(), ingress by(true, "prod/db", 0));
case!(sctp_port_allowed: PORTS, flow(&prod_web(), &prod_db(), Protocol::Sctp, 3868)
    => egress open(), ingress by(true, "prod/db", 0));
case!(end_port_range_inside: PORTS, tcp(&prod_web(), &prod_db(), 32500)
    => egress open(), ingress by(true, "prod/db", 0));
case!(end_port_range_lower_bound: PORTS, tcp(&prod_web(), &prod_db(), 32000)
    => egress open(), ingress by(true, "prod/db", 0));
case!(end_port_range_upper_bound: PORTS, tcp(&prod_web(), &prod_db(), 32768)
    => egress open(), ingress by(true, "prod/db", 0));
case!(end_port_range_above: PORTS, tcp(&prod_web(), &prod_db(), 32769)
    => egress open(), ingress by(false, "prod/db", -1));
case!(protocol_without_port_allows_every_port: ANY_UDP_PORT, udp(&prod_web(), &prod_db(), 40000)
    => egress open(), ingress by(true, "prod/db", 0));
case!(protocol_without_port_excludes_other_protocols: ANY_UDP_PORT, tcp(&prod_web(), &prod_db(), 40000)
    => egress open(), ingress by(false, "prod/db", -1));
case!(icmp_not_matched_by_port_rules: PORTS, flow(&prod_web(), &prod_db(), Protocol::Icmp, 0)
    => egress open(), ingress by(false, "prod/db", -1));
case!(icmp_matched_by_rule_without_ports: DB_FROM_WEB, flow(&prod_web(), &prod_db(), Protocol::Icmp, 0)
    => egress open(), ingress by(true, "prod/db", 0));
case!(named_port_resolves_on_destination_pod: NAMED_PORT_INGRESS, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
case!(named_port_other_number_denied: NAMED_PORT_INGRESS, tcp(&prod_web(), &prod_db(), 5433)
    => egress open(), ingress by(false, "prod/db", -1));
case!(named_port_needs_matching_protocol: NAMED_PORT_INGRESS, udp(&prod_web(), &prod_db(), 9187)
    => egress open(), ingress by(false, "prod/db", -1));
case!(named_port_egress_resolves_on_destination_pod: NAMED_PORT_EGRESS, tcp(&prod_web(), &prod_db(), 5432)
    => egress by(true, "prod/web", 0), ingress open());
case!(named_port_egress_to_non_pod_denied: NAMED_PORT_EGRESS, tcp(&prod_web(), &world(), 5432)
    => egress by(false, "prod/web", -1), ingress open());
case!(named_port_egress_to_pod_without_that_name: NAMED_PORT_EGRESS, tcp(&prod_web(), &prod_api(), 5432)
    => egress by(false, "prod/web", -1), ingress open());

// --- policyTypes ---------------------------------------------------------------

case!(policy_types_default_ingress_only_without_egress_rules: DB_FROM_WEB, tcp(&prod_db(), &world(), 443)
    => egress open(), ingress open());
case!(policy_types_default_adds_egress_with_egress_rules: EGRESS_RULES_NO_TYPES, tcp(&prod_web(), &prod_api(), 80)
    => egress by(false, "prod/web", -1), ingress open());
case!(policy_types_default_egress_rule_allows: EGRESS_RULES_NO_TYPES, tcp(&prod_web(), &prod_db(), 5432)
    => egress by(true, "prod/web", 0), ingress open());
case!(policy_types_default_also_isolates_ingress: EGRESS_RULES_NO_TYPES, tcp(&prod_api(), &prod_web(), 80)
    => egress open(), ingress by(false, "prod/web", -1));
case!(egress_only_isolation_denies_egress: EGRESS_ONLY_DENY, tcp(&prod_web(), &prod_db(), 5432)
    => egress by(false, "prod/no-egress", -1), ingress open());
case!(egress_only_isolation_leaves_ingress_open: EGRESS_ONLY_DENY, tcp(&prod_api(), &prod_web(), 80)
    => egress open(), ingress open());

// --- unions, expressions, both sides ----------------------------------------------

case!(union_first_policy_allows: UNION, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db-web", 0));
case!(union_second_policy_allows: UNION, tcp(&prod_api(), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db-api", 0));
case!(union_denied_names_last_selecting_policy: UNION, tcp(&dev_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db-web", -1));
case!(peer_and_ports_are_anded: PEER_AND_PORT, tcp(&prod_web(), &prod_db(), 8080)
    => egress open(), ingress by(false, "prod/db", -1));
case!(second_rule_matches: PEER_AND_PORT, tcp(&prod_api(), &prod_db(), 8080)
    => egress open(), ingress by(true, "prod/db", 1));
case!(match_expressions_in_and_not_in: EXPRESSIONS, tcp(&prod_api(), &prod_db(), 1)
    => egress open(), ingress by(true, "prod/db", 0));
case!(match_expressions_exists_on_namespace: EXPRESSIONS, tcp(&mon_prom(), &prod_db(), 1)
    => egress open(), ingress by(true, "prod/db", 1));
case!(match_expressions_no_match: EXPRESSIONS, tcp(&dev_tool(), &prod_db(), 1)
    => egress open(), ingress by(false, "prod/db", -1));
case!(not_in_matches_pod_without_the_label: ROLE_NOT_BACKEND, tcp(&prod_web(), &prod_db(), 1)
    => egress open(), ingress by(true, "prod/db", 0));
case!(not_in_excludes_listed_value: ROLE_NOT_BACKEND, tcp(&prod_api(), &prod_db(), 1)
    => egress open(), ingress by(false, "prod/db", -1));
case!(world_source_has_no_egress_side: DB_FROM_WEB, tcp(&world(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));

#[test]
fn both_sides_must_allow() {
    let yaml = format!("{EGRESS_ONLY_DENY}---\n{DB_FROM_WEB}");
    check(
        &yaml,
        &tcp(&prod_web(), &prod_db(), 5432),
        by(false, "prod/no-egress", -1),
        by(true, "prod/db", 0),
    );
}

#[test]
fn host_networked_destination_is_not_policed() {
    let mut host = prod_db();
    host.host = true;
    let r = eval(DENY_ALL_INGRESS_PROD, &tcp(&prod_web(), &host, 5432));
    assert_eq!(side(&r.ingress), open());
    assert_eq!(r.ingress.ruling, crate::eval::Ruling::NotApplicable);
}

#[test]
fn empty_ingress_list_with_types_denies() {
    let yaml = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress: []
  egress: []
"#;
    check(
        yaml,
        &tcp(&prod_db(), &prod_db(), 5432),
        by(false, "prod/db", -1),
        by(false, "prod/db", -1),
    );
}
