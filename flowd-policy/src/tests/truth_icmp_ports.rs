//! Truth table: Calico rules on ICMP type/code (`icmp`, `notICMP`) and on source ports, as the
//! projectcalico.org/v3 Rule reference defines them: `icmp` matches a message of that type (and
//! code, when given), `notICMP` any other; `source.ports`/`notPorts` match the sending port,
//! named ports naming the source endpoint's own.

use super::helpers::*;
use crate::endpoint::{Endpoint, Protocol};
use crate::load::load_str;

const ICMP_RULES: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Deny
    protocol: ICMP
    icmp: {type: 3, code: 4}
  - action: Allow
    protocol: ICMP
    icmp: {type: 8}
  - action: Allow
    protocol: ICMPv6
    icmp: {type: 128, code: 0}
  - action: Allow
    protocol: ICMP
    notICMP: {type: 5}
"#;

const SOURCE_PORTS: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Deny
    protocol: UDP
    source: {notPorts: ['1024:65535']}
  - action: Allow
    protocol: TCP
    source: {ports: ['40000:40009', metrics]}
  - action: Allow
    protocol: UDP
    source: {ports: [53]}
    destination: {ports: [5353]}
"#;

fn v6(mut ep: Endpoint, addr: &str) -> Endpoint {
    ep.ip = ip(addr);
    ep
}

// --- icmp / notICMP ------------------------------------------------------------------------

case!(icmp_type_matches_any_code_when_no_code_given: ICMP_RULES,
    icmp(&prod_web(), &prod_db(), Protocol::Icmp, 8, 0)
    => egress open(), ingress by(true, "prod/db", 1));
case!(icmp_type_and_code_match_exactly: ICMP_RULES,
    icmp(&prod_web(), &prod_db(), Protocol::Icmp, 3, 4)
    => egress open(), ingress by(false, "prod/db", 0));
case!(icmp_same_type_other_code_is_not_a_match: ICMP_RULES,
    icmp(&prod_web(), &prod_db(), Protocol::Icmp, 3, 1)
    => egress open(), ingress by(true, "prod/db", 3));
case!(not_icmp_excludes_its_type: ICMP_RULES,
    icmp(&prod_web(), &prod_db(), Protocol::Icmp, 5, 1)
    => egress open(), ingress by(false, "prod/db", -1));
case!(icmp_unknown_type_meets_only_not_icmp: ICMP_RULES,
    flow(&prod_web(), &prod_db(), Protocol::Icmp, 0)
    => egress open(), ingress by(true, "prod/db", 3));
case!(icmpv6_echo_request_matches_its_own_numbering: ICMP_RULES,
    icmp(&v6(prod_web(), "fd00::1"), &v6(prod_db(), "fd00::2"), Protocol::IcmpV6, 128, 0)
    => egress open(), ingress by(true, "prod/db", 2));
case!(icmpv6_type_8_is_not_an_echo_request: ICMP_RULES,
    icmp(&v6(prod_web(), "fd00::1"), &v6(prod_db(), "fd00::2"), Protocol::IcmpV6, 8, 0)
    => egress open(), ingress by(false, "prod/db", -1));

// --- source ports --------------------------------------------------------------------------

case!(source_port_in_range: SOURCE_PORTS, from_port(tcp(&prod_web(), &prod_db(), 5432), 40009)
    => egress open(), ingress by(true, "prod/db", 1));
case!(source_port_outside_range: SOURCE_PORTS, from_port(tcp(&prod_web(), &prod_db(), 5432), 40010)
    => egress open(), ingress by(false, "prod/db", -1));
case!(source_named_port_is_the_sources_own: SOURCE_PORTS,
    from_port(tcp(&prod_db(), &prod_db(), 5432), 9187)
    => egress open(), ingress by(true, "prod/db", 1));
case!(source_named_port_of_a_source_without_it: SOURCE_PORTS,
    from_port(tcp(&prod_web(), &prod_db(), 5432), 9187)
    => egress open(), ingress by(false, "prod/db", -1));
case!(source_not_ports_outside_matches: SOURCE_PORTS, from_port(udp(&prod_web(), &prod_db(), 5353), 53)
    => egress open(), ingress by(false, "prod/db", 0));
case!(source_not_ports_inside_does_not_match: SOURCE_PORTS,
    from_port(udp(&prod_web(), &prod_db(), 5353), 41000)
    => egress open(), ingress by(false, "prod/db", -1));
case!(source_port_unknown_is_outside_not_ports_and_in_no_ports: SOURCE_PORTS,
    udp(&prod_web(), &prod_db(), 5353)
    => egress open(), ingress by(false, "prod/db", 0));

/// The cache keys on the source port only when a rule reads it; either way two flows that
/// differ only there get their own answers.
#[test]
fn cached_answers_follow_the_source_port() {
    let e = engine(SOURCE_PORTS);
    let inside = from_port(tcp(&prod_web(), &prod_db(), 5432), 40001);
    let outside = from_port(tcp(&prod_web(), &prod_db(), 5432), 50001);
    for _ in 0..2 {
        assert!(e.evaluate(&inside).allowed);
        assert!(!e.evaluate(&outside).allowed);
    }
    let src = e.endpoint_key(&prod_web());
    let dst = e.endpoint_key(&prod_db());
    let keyed = |q: &crate::FlowQuery| {
        e.evaluate_keyed((&q.source, src), (&q.destination, dst), q.transport())
            .allowed
    };
    assert!(keyed(&inside));
    assert!(!keyed(&outside));
}

#[test]
fn icmp_criteria_need_an_icmp_protocol_and_a_type() {
    for (rule, expect) in [
        (
            "protocol: TCP, icmp: {type: 8}",
            "need protocol ICMP or ICMPv6",
        ),
        ("notICMP: {type: 8}", "need protocol ICMP or ICMPv6"),
        (
            "protocol: ICMP, icmp: {code: 1}",
            "an ICMP code needs an ICMP type",
        ),
        ("protocol: ICMP, icmp: {type: 255}", "outside 0-254"),
        (
            "protocol: ICMP, icmp: {type: 3, code: 256}",
            "outside 0-255",
        ),
        ("protocol: ICMP, icmp: {type: echo}", "expected a number"),
    ] {
        let yaml = format!(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: prod}}\nspec:\n  ingress:\n  - {{action: Allow, {rule}}}\n"
        );
        let loaded = load_str(&yaml, "icmp.yaml");
        let text = format!("{:?}", loaded.errors);
        assert!(text.contains(expect), "{rule}: {text}");
        assert!(loaded.policies.policies.is_empty(), "{rule}");
    }
}
