//! Truth table: Calico NetworkSet and GlobalNetworkSet, as the projectcalico.org/v3 reference
//! scopes them: a NetworkPolicy's selectors reach the NetworkSets of its own namespace, its
//! `namespaceSelector` those of the selected namespaces and, with `global()`, GlobalNetworkSets;
//! a GlobalNetworkPolicy's selectors without a namespaceSelector reach every set.

use super::helpers::*;
use crate::endpoint::Endpoint;

/// A row whose policies come after the network sets below.
macro_rules! with_sets {
    ($name:ident: $yaml:expr, $q:expr => egress $eg:expr, ingress $ing:expr) => {
        #[test]
        fn $name() {
            check(&format!("{SETS}{}", $yaml), &$q, $eg, $ing);
        }
    };
}

const SETS: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partner, namespace: prod, labels: {role: partner}}
spec: {nets: [203.0.113.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: dev-partner, namespace: dev, labels: {role: partner}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: resolvers, labels: {role: dns}}
spec: {nets: [8.8.8.0/24, 8.8.4.4/32]}
"#;

const SAME_NAMESPACE: &str = r#"
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: role == 'partner'}
"#;

const GLOBAL_SCOPE: &str = r#"
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-egress, namespace: prod}
spec:
  selector: app == 'web'
  types: [Egress]
  egress:
  - action: Allow
    destination: {selector: role == 'dns', namespaceSelector: global()}
  - action: Allow
    destination: {selector: role == 'partner', namespaceSelector: "projectcalico.org/name == 'dev'"}
"#;

const GLOBAL_POLICY: &str = r#"
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: no-partners}
spec:
  selector: all()
  types: [Egress]
  egress:
  - action: Deny
    destination: {selector: role == 'partner'}
  - action: Allow
    destination: {notSelector: role == 'dns', nets: [8.0.0.0/8]}
"#;

fn outside(addr: &str) -> Endpoint {
    Endpoint::external(ip(addr))
}

with_sets!(namespaced_policy_reaches_its_own_namespace_set: SAME_NAMESPACE,
    tcp(&outside("203.0.113.9"), &prod_db(), 5432)
    => egress open(), ingress by(true, "prod/db", 0));
with_sets!(namespaced_policy_does_not_reach_another_namespace_set: SAME_NAMESPACE,
    tcp(&outside("198.51.100.9"), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
with_sets!(namespaced_policy_does_not_reach_global_sets_without_global: SAME_NAMESPACE,
    tcp(&outside("8.8.8.8"), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
with_sets!(address_in_no_set_is_not_selected: SAME_NAMESPACE,
    tcp(&outside("192.0.2.1"), &prod_db(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));

with_sets!(global_selects_global_network_sets: GLOBAL_SCOPE, udp(&prod_web(), &outside("8.8.4.4"), 53)
    => egress by(true, "prod/web-egress", 0), ingress open());
with_sets!(global_does_not_select_namespaced_sets: GLOBAL_SCOPE,
    tcp(&prod_web(), &outside("203.0.113.9"), 443)
    => egress by(false, "prod/web-egress", -1), ingress open());
with_sets!(namespace_selector_reaches_the_selected_namespace_sets: GLOBAL_SCOPE,
    tcp(&prod_web(), &outside("198.51.100.9"), 443)
    => egress by(true, "prod/web-egress", 1), ingress open());

with_sets!(global_policy_reaches_every_set: GLOBAL_POLICY, tcp(&prod_web(), &outside("198.51.100.9"), 443)
    => egress by(false, "no-partners", 0), ingress open());
with_sets!(global_policy_reaches_namespaced_sets_too: GLOBAL_POLICY, tcp(&dev_web(), &outside("203.0.113.9"), 443)
    => egress by(false, "no-partners", 0), ingress open());
with_sets!(not_selector_excludes_addresses_of_a_matching_set: GLOBAL_POLICY,
    udp(&prod_web(), &outside("8.8.8.8"), 53)
    => egress by(false, "no-partners", -1), ingress open());
with_sets!(not_selector_passes_addresses_outside_the_set: GLOBAL_POLICY,
    udp(&prod_web(), &outside("8.1.1.1"), 53)
    => egress by(true, "no-partners", 1), ingress open());

#[test]
fn the_most_specific_set_names_an_address() {
    let e = engine(SETS);
    let name = |addr: &str| e.network_set_of(&ip(addr)).map(|s| s.qualified_name());
    assert_eq!(name("8.8.4.4").as_deref(), Some("resolvers"));
    assert_eq!(name("203.0.113.200").as_deref(), Some("prod/partner"));
    assert_eq!(name("192.0.2.1"), None);
}
