//! Loading: document forms, kinds, and errors that name file, object and field.

use std::path::PathBuf;

use crate::error::LoadError;
use crate::load::{load_paths, load_str};
use crate::model::{PolicyKind, TierDefaultAction};

const MIXED: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: a
  namespace: prod
spec:
  podSelector: {}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: b
spec:
  selector: all()
---
# an empty document is fine
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-a-policy, namespace: prod}
data: {x: y}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Pass}
"#;

#[test]
fn multi_document_yaml_loads_policies_and_tiers() {
    let r = load_str(MIXED, "mixed.yaml");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.policies.policies.len(), 2);
    assert_eq!(r.policies.policies[0].kind, PolicyKind::NetworkPolicy);
    assert_eq!(r.policies.policies[1].kind, PolicyKind::GlobalNetworkPolicy);
    assert_eq!(r.policies.tiers.len(), 1);
    assert_eq!(r.policies.tiers[0].order, Some(100.0));
    assert_eq!(r.policies.tiers[0].default_action, TierDefaultAction::Pass);
}

#[test]
fn unknown_kind_is_a_warning_not_an_error() {
    let r = load_str(MIXED, "mixed.yaml");
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(
        r.warnings[0].contains("ConfigMap prod/not-a-policy"),
        "{:?}",
        r.warnings
    );
}

#[test]
fn empty_file_is_valid() {
    for text in ["", "\n", "---\n", "# only a comment\n"] {
        let r = load_str(text, "empty.yaml");
        assert!(r.errors.is_empty(), "{text:?}: {:?}", r.errors);
        assert!(r.policies.is_empty());
    }
}

#[test]
fn kubectl_list_output_loads() {
    let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: one, namespace: prod, resourceVersion: "1", uid: abc}
  spec:
    podSelector: {matchLabels: {app: db}}
    policyTypes: [Ingress]
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: two, namespace: prod}
  spec:
    podSelector: {}
    policyTypes: [Ingress]
metadata:
  resourceVersion: ""
"#;
    let r = load_str(text, "list.yaml");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let names: Vec<_> = r
        .policies
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["one", "two"]);
}

#[test]
fn typed_list_kind_loads() {
    let text = r#"{"apiVersion":"projectcalico.org/v3","kind":"NetworkPolicyList","items":[
      {"apiVersion":"projectcalico.org/v3","kind":"NetworkPolicy",
       "metadata":{"name":"x","namespace":"prod"},
       "spec":{"selector":"app == 'db'","ingress":[{"action":"Allow","protocol":"TCP",
               "destination":{"ports":[7070,"42000:43000"]}}]}}]}"#;
    let r = load_str(text, "list.json");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.policies.policies.len(), 1);
    assert_eq!(r.policies.policies[0].kind, PolicyKind::CalicoNetworkPolicy);
}

#[test]
fn json_single_and_concatenated_documents() {
    let one = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"a","namespace":"x"},"spec":{"podSelector":{}}}"#;
    let r = load_str(one, "a.json");
    assert!(r.errors.is_empty());
    assert_eq!(r.policies.policies.len(), 1);
    let two = format!("{one}\n{}", one.replace("\"a\"", "\"b\""));
    let r = load_str(&two, "ab.json");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.policies.policies.len(), 2);
}

#[test]
fn all_calico_kinds_are_recognised() {
    let text = r#"
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: a, namespace: n}
spec: {selector: all()}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: b}
spec: {stagedAction: Delete}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: c, namespace: n}
spec: {podSelector: {}}
---
apiVersion: crd.projectcalico.org/v1
kind: NetworkPolicy
metadata: {name: d, namespace: n}
spec: {selector: all()}
"#;
    let r = load_str(text, "kinds.yaml");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let kinds: Vec<_> = r.policies.policies.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            PolicyKind::StagedNetworkPolicy,
            PolicyKind::StagedGlobalNetworkPolicy,
            PolicyKind::StagedKubernetesNetworkPolicy,
            PolicyKind::CalicoNetworkPolicy
        ]
    );
}

const MALFORMED: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: good-1, namespace: prod}
spec:
  podSelector: {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad-port, namespace: prod}
spec:
  podSelector: {}
  ingress:
  - ports:
    - port: 80
    - port: 70000
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: bad-selector, namespace: prod}
spec:
  selector: app == web
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: bad-action}
spec:
  egress:
  - action: Allow
  - action: Reject
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: prod}
spec: {podSelector: {}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad-expr, namespace: prod}
spec:
  podSelector:
    matchExpressions:
    - {key: app, operator: Equals, values: [x]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: bad-range, namespace: prod}
spec:
  ingress:
  - action: Allow
    destination:
      ports: ['43000:42000']
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad-except, namespace: prod}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: good-2, namespace: prod}
spec:
  podSelector: {}
"#;

fn invalid(errors: &[LoadError], object: &str) -> (String, String, String) {
    for e in errors {
        if let LoadError::Invalid {
            file,
            object: o,
            field,
            message,
        } = e
        {
            if o == object {
                return (file.clone(), field.clone(), message.clone());
            }
        }
    }
    panic!("no error for {object}: {errors:#?}");
}

#[test]
fn malformed_objects_do_not_stop_the_others() {
    let r = load_str(MALFORMED, "policies/bad.yaml");
    let names: Vec<_> = r
        .policies
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["good-1", "good-2"]);
    assert_eq!(r.errors.len(), 7, "{:#?}", r.errors);
    for e in &r.errors {
        assert_eq!(e.file(), "policies/bad.yaml");
    }
}

#[test]
fn error_names_file_object_and_field_for_bad_port() {
    let r = load_str(MALFORMED, "policies/bad.yaml");
    let (file, field, message) = invalid(&r.errors, "NetworkPolicy prod/bad-port");
    assert_eq!(file, "policies/bad.yaml");
    assert_eq!(field, "spec.ingress[0].ports[1].port");
    assert!(message.contains("70000"), "{message}");
    let text = r.errors[0].to_string();
    assert!(
        text.starts_with(
            "policies/bad.yaml: NetworkPolicy prod/bad-port: spec.ingress[0].ports[1].port:"
        ),
        "{text}"
    );
}

#[test]
fn error_for_bad_selector_has_position() {
    let r = load_str(MALFORMED, "bad.yaml");
    let (_, field, message) = invalid(&r.errors, "NetworkPolicy prod/bad-selector");
    assert_eq!(field, "spec.selector");
    assert!(message.contains("position 7"), "{message}");
    assert!(message.contains("quoted string"), "{message}");
}

#[test]
fn error_for_bad_action_and_global_object_name() {
    let r = load_str(MALFORMED, "bad.yaml");
    let (_, field, message) = invalid(&r.errors, "GlobalNetworkPolicy bad-action");
    assert_eq!(field, "spec.egress[1].action");
    assert!(message.contains("Reject"), "{message}");
}

#[test]
fn unnamed_object_is_named_by_its_index() {
    let r = load_str(MALFORMED, "bad.yaml");
    let (_, field, _) = invalid(&r.errors, "NetworkPolicy (document 4)");
    assert_eq!(field, "metadata.name");
}

#[test]
fn error_for_match_expression_operator() {
    let r = load_str(MALFORMED, "bad.yaml");
    let (_, field, message) = invalid(&r.errors, "NetworkPolicy prod/bad-expr");
    assert_eq!(field, "spec.podSelector.matchExpressions[0].operator");
    assert!(message.contains("Equals"));
}

#[test]
fn error_for_reversed_port_range_and_except_outside_cidr() {
    let r = load_str(MALFORMED, "bad.yaml");
    let (_, field, _) = invalid(&r.errors, "NetworkPolicy prod/bad-range");
    assert_eq!(field, "spec.ingress[0].destination.ports[0]");
    let (_, field, message) = invalid(&r.errors, "NetworkPolicy prod/bad-except");
    assert_eq!(field, "spec.ingress[0].from[0].ipBlock.except[0]");
    assert!(message.contains("not inside"), "{message}");
}

#[test]
fn more_field_errors() {
    let cases = [
        (
            "spec:\n  podSelector: {}\n  policyTypes: [Inbound]\n",
            "spec.policyTypes[0]",
        ),
        (
            "spec:\n  podSelector: {matchLabels: {version: 1}}\n",
            "spec.podSelector.matchLabels.version",
        ),
        (
            "spec:\n  podSelector: {}\n  ingress:\n  - from: [{}]\n",
            "spec.ingress[0].from[0]",
        ),
        (
            "spec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: http, endPort: 90}]\n",
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            "spec:\n  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/99}}]\n",
            "spec.egress[0].to[0].ipBlock.cidr",
        ),
        ("spec: []\n", "spec"),
        ("spec:\n  podSelector: {}\n  ingress: {}\n", "spec.ingress"),
    ];
    for (spec, field) in cases {
        let text = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: x, namespace: n}}\n{spec}"
        );
        let r = load_str(&text, "f.yaml");
        let (_, got, _) = invalid(&r.errors, "NetworkPolicy n/x");
        assert_eq!(got, field, "{spec}");
    }
}

#[test]
fn yaml_syntax_error_names_document_and_keeps_earlier_ones() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ok, namespace: n}\nspec: {podSelector: {}}\n---\nkind: [unclosed\n";
    let r = load_str(text, "broken.yaml");
    assert_eq!(r.policies.policies.len(), 1);
    assert!(
        matches!(&r.errors[..], [LoadError::Syntax { document: 1, file, .. }] if file == "broken.yaml"),
        "{:?}",
        r.errors
    );
}

#[test]
fn unquoted_bang_selector_gets_a_hint() {
    let text = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: x, namespace: n}\nspec:\n  selector: !has(app)\n";
    let r = load_str(text, "tag.yaml");
    assert_eq!(r.policies.policies.len(), 0);
    assert!(!r.errors.is_empty());
    let text = r.errors[0].to_string();
    assert!(text.contains("tag.yaml"), "{text}");
}

#[test]
fn missing_namespace_defaults_with_warning_and_missing_api_version_warns() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelector: {}}\n---\nkind: NetworkPolicy\nmetadata: {name: y}\nspec: {}\n";
    let r = load_str(text, "f.yaml");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.policies.policies[0].namespace.as_deref(), Some("default"));
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(r.warnings[1].contains("apiVersion"));
}

#[test]
fn duplicates_keep_the_last_and_warn() {
    let one = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: n}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n";
    let two = one.replace("[Ingress]", "[Egress]");
    let r = load_str(&format!("{one}---\n{two}"), "dup.yaml");
    assert_eq!(r.policies.policies.len(), 1);
    assert!(r.policies.policies[0].egress);
    assert!(r.warnings.iter().any(|w| w.contains("more than once")));
}

#[test]
fn host_only_policies_are_skipped_with_warning() {
    let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: h}\nspec: {preDNAT: true, applyOnForward: true, ingress: [{action: Deny}]}\n";
    let r = load_str(text, "h.yaml");
    assert!(r.errors.is_empty());
    assert!(r.policies.policies.is_empty());
    assert!(r.warnings[0].contains("host endpoints"));
}

#[test]
fn missing_tier_object_warns() {
    let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {tier: nowhere}\n";
    let r = load_str(text, "t.yaml");
    assert!(
        r.warnings.iter().any(|w| w.contains("nowhere")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn non_mapping_documents_are_errors() {
    let r = load_str("just a string\n", "s.yaml");
    assert_eq!(r.errors.len(), 1);
    assert!(r.errors[0].to_string().contains("expected a mapping"));
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowd-policy-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn load_paths_reads_directories_sorted_and_not_recursive() {
    let dir = temp_dir("dir");
    let np = |name: &str| {
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: n}}\nspec: {{podSelector: {{}}}}\n")
    };
    std::fs::write(dir.join("b.yaml"), np("b")).expect("write");
    std::fs::write(dir.join("a.yml"), np("a")).expect("write");
    std::fs::write(
        dir.join("c.json"),
        r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"c","namespace":"n"},"spec":{"podSelector":{}}}"#,
    )
    .expect("write");
    std::fs::write(dir.join("notes.txt"), np("ignored")).expect("write");
    std::fs::create_dir_all(dir.join("sub")).expect("sub");
    std::fs::write(dir.join("sub/d.yaml"), np("d")).expect("write");
    std::fs::write(dir.join("z-bad.yaml"), "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: z, namespace: n}\nspec: {podSelector: 3}\n").expect("write");

    let r = load_paths(&[
        dir.clone(),
        dir.join("sub/d.yaml"),
        dir.join("missing.yaml"),
    ]);
    let names: Vec<_> = r
        .policies
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert_eq!(r.errors.len(), 2, "{:#?}", r.errors);
    assert!(r.errors.iter().any(|e| e.file().ends_with("z-bad.yaml")
        && e.to_string()
            .contains("NetworkPolicy n/z: spec.podSelector")));
    assert!(r
        .errors
        .iter()
        .any(|e| matches!(e, LoadError::Io { file, .. } if file.ends_with("missing.yaml"))));
    let _ = std::fs::remove_dir_all(&dir);
}
