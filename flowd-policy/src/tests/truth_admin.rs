//! Truth table: AdminNetworkPolicy, BaselineAdminNetworkPolicy (v1alpha1) and
//! ClusterNetworkPolicy (v1alpha2), written from the API's documentation: admin policies by
//! priority (lower first) before NetworkPolicy, Pass to NetworkPolicy and then the baseline,
//! the baseline only for pods no NetworkPolicy selects, no implicit isolation, host-network pods
//! never subjects, networks matching pod addresses too, ports as destination ports.

use super::helpers::*;
use crate::load::load_str;

/// The rule name of the side that decided, as attribution reports it.
fn rule_name(yaml: &str, q: &crate::FlowQuery) -> (Option<String>, Option<String>) {
    let e = eval(yaml, q);
    (e.egress.rule_name, e.ingress.rule_name)
}

const PRIORITIES: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: deny-dev-to-prod}
spec:
  priority: 20
  subject: {namespaces: {matchLabels: {env: prod}}}
  ingress:
  - name: deny-dev
    action: Deny
    from: [{namespaces: {matchLabels: {env: dev}}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: allow-tool}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {env: prod}}}
  ingress:
  - name: allow-dev-tool
    action: Allow
    from:
    - pods:
        namespaceSelector: {matchLabels: {env: dev}}
        podSelector: {matchLabels: {app: tool}}
"#;

const TIES: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: b-allow}
spec:
  priority: 5
  subject: {namespaces: {}}
  ingress: [{action: Allow, from: [{namespaces: {}}]}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: a-deny}
spec:
  priority: 5
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
"#;

const PASS_THEN_NETWORK_POLICY_THEN_BASELINE: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: pass-monitoring}
spec:
  priority: 1
  subject: {namespaces: {}}
  ingress:
  - name: pass-ops
    action: Pass
    from: [{namespaces: {matchLabels: {team: ops}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-allow-prom, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: ops}}}]
    ports: [{port: 9187}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - name: deny-ops
    action: Deny
    from: [{namespaces: {matchLabels: {team: ops}}}]
"#;

const DENY_OVER_NETWORK_POLICY: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: web-never-db}
spec:
  priority: 50
  subject:
    pods:
      namespaceSelector: {matchLabels: {env: prod}}
      podSelector: {matchLabels: {app: web}}
  egress:
  - name: no-postgres
    action: Deny
    to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}]
    ports: [{portNumber: {port: 5432}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all-egress, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{}]
"#;

const NETWORKS_AND_PORTS: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: egress-guard}
spec:
  priority: 30
  subject: {namespaces: {matchLabels: {env: prod}}}
  egress:
  - name: dns
    action: Allow
    to: [{networks: [8.8.8.8/32]}]
    ports: [{portNumber: {protocol: UDP, port: 53}}]
  - name: nothing-else
    action: Deny
    to: [{networks: [0.0.0.0/0]}]
  ingress:
  - name: postgres-by-name
    action: Allow
    from: [{namespaces: {}}]
    ports: [{namedPort: pg}, {portRange: {protocol: TCP, start: 42000, end: 43000}}]
  - name: rest
    action: Deny
    from: [{namespaces: {}}]
"#;

const CLUSTER_NETWORK_POLICIES: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: admin-accept-prom}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  ingress:
  - name: accept-prom
    action: Accept
    from: [{pods: {namespaceSelector: {matchLabels: {team: ops}}, podSelector: {}}}]
    protocols:
    - tcp: {destinationPort: {range: {start: 9000, end: 9999}}}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: baseline-prod}
spec:
  tier: Baseline
  priority: 100
  subject: {namespaces: {matchLabels: {env: prod}}}
  ingress:
  - name: pass-web
    action: Pass
    from: [{pods: {podSelector: {matchLabels: {app: web}}}}]
  - name: deny-all
    action: Deny
    from: [{namespaces: {}}]
"#;

// --- priorities and ties -------------------------------------------------------------------

case!(lower_priority_number_is_checked_first: PRIORITIES, tcp(&dev_tool(), &prod_db(), 5432)
    => egress open(), ingress by(true, "allow-tool", 0));
case!(later_priority_decides_what_earlier_did_not: PRIORITIES, tcp(&dev_web(), &prod_db(), 5432)
    => egress open(), ingress by(false, "deny-dev-to-prod", 0));
case!(no_admin_rule_matches_means_no_isolation: PRIORITIES, tcp(&prod_web(), &prod_db(), 5432)
    => egress open(), ingress open());
case!(subjects_outside_do_not_see_admin_rules: PRIORITIES, tcp(&dev_tool(), &dev_web(), 80)
    => egress open(), ingress open());
case!(equal_priorities_go_by_name: TIES, tcp(&prod_web(), &prod_db(), 1)
    => egress open(), ingress by(false, "a-deny", 0));

#[test]
fn domain_name_peers_are_reported_as_not_evaluated() {
    let loaded = load_str(
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n\
         metadata: {name: by-name}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n\
         \x20 egress:\n  - {action: Allow, to: [{domainNames: [\"*.example.com\"]}]}\n",
        "names.yaml",
    );
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("by-name") && w.contains("domainNames peers are not evaluated")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn equal_priorities_are_reported() {
    let loaded = load_str(TIES, "ties.yaml");
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("a-deny") && w.contains("b-allow") && w.contains("priority 5")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn the_deciding_rule_is_named() {
    let q = tcp(&dev_tool(), &prod_db(), 5432);
    assert_eq!(
        rule_name(PRIORITIES, &q),
        (None, Some("allow-dev-tool".to_string()))
    );
    let e = engine(PRIORITIES);
    let text = crate::explain::explain(&q, &e.explain(&q));
    assert!(
        text.contains("allowed by AdminNetworkPolicy allow-tool (tier adminnetworkpolicy) rule 0 (allow-dev-tool)"),
        "{text}"
    );
}

// --- Pass, NetworkPolicy, baseline -----------------------------------------------------------

case!(pass_reaches_the_network_policy_that_allows: PASS_THEN_NETWORK_POLICY_THEN_BASELINE,
    tcp(&mon_prom(), &prod_db(), 9187)
    => egress open(), ingress by(true, "prod/db-allow-prom", 0));
case!(pass_then_network_policy_isolation_denies_before_any_baseline: PASS_THEN_NETWORK_POLICY_THEN_BASELINE,
    tcp(&mon_prom(), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db-allow-prom", -1));
case!(pass_with_no_network_policy_reaches_the_baseline: PASS_THEN_NETWORK_POLICY_THEN_BASELINE,
    tcp(&mon_prom(), &prod_web(), 80)
    => egress open(), ingress by(false, "default", 0));
case!(baseline_rules_that_do_not_match_allow: PASS_THEN_NETWORK_POLICY_THEN_BASELINE,
    tcp(&dev_web(), &prod_web(), 80)
    => egress open(), ingress open());

case!(admin_deny_is_not_overridden_by_a_network_policy_allow: DENY_OVER_NETWORK_POLICY,
    tcp(&prod_web(), &prod_db(), 5432)
    => egress by(false, "web-never-db", 0), ingress open());
case!(admin_rule_for_other_ports_leaves_the_network_policy_to_decide: DENY_OVER_NETWORK_POLICY,
    tcp(&prod_web(), &prod_db(), 80)
    => egress by(true, "prod/allow-all-egress", 0), ingress open());

#[test]
fn host_network_pods_are_never_subjects() {
    let mut host_pod = prod_web();
    host_pod.host = true;
    check(
        DENY_OVER_NETWORK_POLICY,
        &tcp(&host_pod, &prod_db(), 5432),
        open(),
        open(),
    );
}

// --- peers and ports -----------------------------------------------------------------------

case!(networks_and_protocol_ports: NETWORKS_AND_PORTS, udp(&prod_web(), &dns(), 53)
    => egress by(true, "egress-guard", 0), ingress open());
case!(networks_deny_other_ports: NETWORKS_AND_PORTS, tcp(&prod_web(), &dns(), 443)
    => egress by(false, "egress-guard", 1), ingress open());
case!(networks_match_pod_addresses_too: NETWORKS_AND_PORTS, tcp(&prod_web(), &prod_db(), 5432)
    => egress by(false, "egress-guard", 1), ingress by(true, "egress-guard", 0));
case!(named_port_resolves_on_the_destination_pod: NETWORKS_AND_PORTS, tcp(&dev_web(), &prod_db(), 5432)
    => egress open(), ingress by(true, "egress-guard", 0));
case!(port_range_inclusive: NETWORKS_AND_PORTS, tcp(&dev_web(), &prod_db(), 43000)
    => egress open(), ingress by(true, "egress-guard", 0));
case!(port_range_outside: NETWORKS_AND_PORTS, tcp(&dev_web(), &prod_db(), 43001)
    => egress open(), ingress by(false, "egress-guard", 1));
case!(port_rule_protocol_must_match: NETWORKS_AND_PORTS, udp(&dev_web(), &prod_db(), 42001)
    => egress open(), ingress by(false, "egress-guard", 1));

// --- ClusterNetworkPolicy (v1alpha2) -------------------------------------------------------

case!(cluster_admin_accept: CLUSTER_NETWORK_POLICIES, tcp(&mon_prom(), &prod_db(), 9187)
    => egress open(), ingress by(true, "admin-accept-prom", 0));
case!(cluster_baseline_deny_when_nothing_else_decided: CLUSTER_NETWORK_POLICIES,
    tcp(&dev_tool(), &prod_db(), 80)
    => egress open(), ingress by(false, "baseline-prod", 1));
case!(cluster_baseline_pass_goes_to_the_default_allow: CLUSTER_NETWORK_POLICIES,
    tcp(&prod_web(), &prod_db(), 80)
    => egress open(), ingress open());
case!(cluster_pods_peer_without_namespaces_is_any_namespace: CLUSTER_NETWORK_POLICIES,
    tcp(&dev_web(), &prod_db(), 80)
    => egress open(), ingress open());
case!(cluster_admin_range_outside_falls_to_baseline: CLUSTER_NETWORK_POLICIES,
    tcp(&mon_prom(), &prod_db(), 10000)
    => egress open(), ingress by(false, "baseline-prod", 1));

#[test]
fn the_api_s_validation_is_applied() {
    let anp = |spec: &str| {
        format!("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {{name: x}}\nspec: {spec}\n")
    };
    let cnp = |spec: &str| {
        format!("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: x}}\nspec: {spec}\n")
    };
    let cases = [
        (anp("{priority: 1001, subject: {namespaces: {}}}"), "outside 0-1000"),
        (anp("{subject: {namespaces: {}}}"), "priority is missing"),
        (anp("{priority: 1, subject: {}}"), "needs one of namespaces, pods"),
        (
            anp("{priority: 1, subject: {namespaces: {}}, ingress: [{action: Accept, from: [{namespaces: {}}]}]}"),
            "expected Allow, Deny, Pass",
        ),
        (
            anp("{priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}]}]}"),
            "exactly one is allowed",
        ),
        (
            anp("{priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: []}]}"),
            "needs at least one peer",
        ),
        (
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: other}\nspec: {subject: {namespaces: {}}}\n".to_string(),
            "must be named",
        ),
        (
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: default}\nspec: {subject: {namespaces: {}}, ingress: [{action: Pass, from: [{namespaces: {}}]}]}\n".to_string(),
            "expected Allow, Deny",
        ),
        (cnp("{priority: 1, subject: {namespaces: {}}}"), "tier is missing"),
        (
            cnp("{tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Allow, from: [{namespaces: {}}]}]}"),
            "expected Accept, Deny, Pass",
        ),
        (
            cnp("{tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {}}]}]}"),
            "destinationPort is missing",
        ),
    ];
    for (yaml, expect) in cases {
        let loaded = load_str(&yaml, "admin.yaml");
        let text = format!("{:?}", loaded.errors);
        assert!(text.contains(expect), "{yaml}\n-> {text}");
        assert!(loaded.policies.policies.is_empty(), "{yaml}");
    }
}

const NODES: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: no-control-plane}
spec:
  priority: 3
  subject: {namespaces: {}}
  egress:
  - name: control-plane
    action: Deny
    to: [{nodes: {matchLabels: {node-role.kubernetes.io/control-plane: ""}}}]
"#;

fn node(labels: &[(&str, &str)]) -> crate::Endpoint {
    let mut node = crate::Endpoint::external(ip("198.18.9.1"));
    node.host = true;
    labels.iter().fold(node, |n, (k, v)| n.with_label(k, v))
}

case!(nodes_peer_matches_a_node_by_its_labels: NODES,
    tcp(&prod_web(), &node(&[("node-role.kubernetes.io/control-plane", "")]), 6443)
    => egress by(false, "no-control-plane", 0), ingress open());
case!(nodes_peer_other_node: NODES, tcp(&prod_web(), &node(&[("role", "worker")]), 6443)
    => egress open(), ingress open());
case!(nodes_peer_is_not_a_pod_with_those_labels: NODES,
    tcp(&prod_web(), &prod_db().with_label("node-role.kubernetes.io/control-plane", ""), 6443)
    => egress open(), ingress open());
