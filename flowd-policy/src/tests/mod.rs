//! Tests of the policy module. Truth tables name each case after the rule of
//! the Kubernetes or Calico documentation it pins down.

/// One row of a truth table: the policies, the flow, and what each side must decide (also
/// checked through `explain` and the cache, see `helpers::check`).
macro_rules! case {
    ($name:ident: $yaml:expr, $q:expr => egress $eg:expr, ingress $ing:expr) => {
        #[test]
        fn $name() {
            check($yaml, &$q, $eg, $ing);
        }
    };
}

mod helpers;

mod cache;
mod jsonl;
mod kubernetes_selector;
mod load;
mod names;
mod objects;
mod recommend;
mod seed;
mod selector;
mod truth_admin;
mod truth_calico;
mod truth_icmp_ports;
mod truth_k8s;
mod truth_network_sets;
mod truth_services;
mod truth_tiers;
