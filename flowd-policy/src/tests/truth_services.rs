//! Truth table: Calico `services` matches in rules (projectcalico.org/v3 Rule reference): a
//! source matches the service's endpoints; a destination matches its endpoints on the ports the
//! service reaches them on, or its cluster IP on the service's ports. A namespaced policy's
//! service without a namespace is in the policy's namespace.

use super::helpers::*;
use crate::endpoint::{Endpoint, Protocol};

const SERVICES: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {services: {name: web}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  selector: app == 'web'
  types: [Egress]
  egress:
  - action: Allow
    protocol: TCP
    destination: {services: {name: db, namespace: prod}}
"#;

const PG: &[(Protocol, u16)] = &[(Protocol::Tcp, 5432)];

fn web_backend() -> Endpoint {
    prod_web().with_service("prod/web", &[(Protocol::Tcp, 8080)])
}

fn db_backend() -> Endpoint {
    prod_db().with_service("prod/db", PG)
}

#[test]
fn a_service_match_names_the_service_and_its_namespace() {
    for (policy, expect) in [
        (
            "kind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  ingress:\n  - {action: Allow, source: {services: {name: web}}}\n",
            "needs a namespace in a global policy",
        ),
        (
            "kind: NetworkPolicy\nmetadata: {name: n, namespace: prod}\nspec:\n  ingress:\n  - {action: Allow, source: {services: {namespace: prod}}}\n",
            "needs the service's name",
        ),
    ] {
        let loaded = crate::load::load_str(
            &format!("apiVersion: projectcalico.org/v3\n{policy}"),
            "services.yaml",
        );
        let text = format!("{:?}", loaded.errors);
        assert!(text.contains(expect), "{policy}\n-> {text}");
    }
}

case!(source_service_endpoint_matches: SERVICES, tcp(&web_backend(), &db_backend(), 5432)
    => egress by(true, "prod/web", 0), ingress by(true, "prod/db", 0));
case!(source_not_an_endpoint_of_the_service: SERVICES, tcp(&prod_api(), &db_backend(), 5432)
    => egress open(), ingress by(false, "prod/db", -1));
case!(source_service_ignores_ports: SERVICES, tcp(&web_backend(), &db_backend(), 9187)
    => egress by(false, "prod/web", -1), ingress by(true, "prod/db", 0));
case!(destination_service_needs_its_port: SERVICES, tcp(&prod_web(), &db_backend(), 9187)
    => egress by(false, "prod/web", -1), ingress by(false, "prod/db", -1));
case!(destination_not_an_endpoint: SERVICES, tcp(&prod_web(), &prod_db(), 5432)
    => egress by(false, "prod/web", -1), ingress by(false, "prod/db", -1));
case!(destination_cluster_ip_on_the_service_port: SERVICES,
    tcp(&prod_web(), &Endpoint::external(ip("10.96.0.20")).with_service("prod/db", PG), 5432)
    => egress by(true, "prod/web", 0), ingress open());
case!(destination_service_with_unknown_ports_matches_any_port: SERVICES,
    tcp(&prod_web(), &prod_db().with_service("prod/db", &[]), 80)
    => egress by(true, "prod/web", 0), ingress by(false, "prod/db", -1));
