//! The Kubernetes string form of label selectors, on the one matcher Calico selectors use.

use std::collections::HashMap;

use crate::error::SelectorError;
use crate::selector::Selector;

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn kubernetes_selector_semantics() {
    let web = labels(&[("app", "web"), ("env", "prod")]);
    let cases = [
        ("app=web", true),
        ("app==web", true),
        ("app!=web", false),
        ("app=db", false),
        ("app=web,env=prod", true),
        ("app=web,env=dev", false),
        ("env in (dev,prod)", true),
        ("env notin (dev,prod)", false),
        ("env notin (dev)", true),
        ("app", true),
        ("!app", false),
        ("!tier", true),
        ("tier!=db", true),
        ("", true),
    ];
    for (selector, expected) in cases {
        assert_eq!(
            Selector::parse_kubernetes(selector).unwrap().matches(&web),
            expected,
            "{selector}"
        );
    }
}

#[test]
fn bad_kubernetes_selectors_are_explained() {
    for bad in ["env in dev", "env within (a)", "=web", "a b c"] {
        match Selector::parse_kubernetes(bad).unwrap_err() {
            SelectorError::Kubernetes { selector, reason } => {
                assert_eq!(selector, bad);
                assert!(!reason.is_empty());
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn both_forms_compile_to_the_same_expression() {
    for (kubernetes, calico) in [
        ("app=web", "app == 'web'"),
        ("app!=web", "app != 'web'"),
        ("env in (a,b)", "env in {'a', 'b'}"),
        ("env notin (a)", "env not in {'a'}"),
        ("app", "has(app)"),
        ("!app", "!has(app)"),
        ("app=web,env in (a)", "app == 'web' && env in {'a'}"),
        ("", "all()"),
    ] {
        assert_eq!(
            Selector::parse_kubernetes(kubernetes).unwrap(),
            Selector::parse(calico).unwrap(),
            "{kubernetes} vs {calico}"
        );
    }
}
