//! The Calico selector language: parsing, evaluation and parse errors.

use std::collections::BTreeMap;

use crate::error::SelectorError;
use crate::selector::{LabelView, Selector};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn m(sel: &str, pairs: &[(&str, &str)]) -> bool {
    Selector::parse(sel)
        .unwrap_or_else(|e| panic!("{sel}: {e}"))
        .matches(&labels(pairs))
}

macro_rules! matches_case {
    ($name:ident: $sel:expr, $labels:expr => $expected:expr) => {
        #[test]
        fn $name() {
            assert_eq!(m($sel, $labels), $expected, "{}", $sel);
        }
    };
}

matches_case!(eq_matches: "app == 'web'", &[("app", "web")] => true);
matches_case!(eq_double_quotes: "app == \"web\"", &[("app", "web")] => true);
matches_case!(eq_other_value: "app == 'web'", &[("app", "db")] => false);
matches_case!(eq_missing_label: "app == 'web'", &[] => false);
matches_case!(ne_other_value: "app != 'web'", &[("app", "db")] => true);
matches_case!(ne_matches_missing_label: "app != 'web'", &[] => true);
matches_case!(ne_same_value: "app != 'web'", &[("app", "web")] => false);
matches_case!(in_set: "app in {'web', 'db'}", &[("app", "db")] => true);
matches_case!(in_set_miss: "app in {'web','db'}", &[("app", "api")] => false);
matches_case!(in_empty_set: "app in {}", &[("app", "api")] => false);
matches_case!(not_in_set: "app not in {'web', 'db'}", &[("app", "api")] => true);
matches_case!(not_in_matches_missing: "app not in {'web'}", &[] => true);
matches_case!(not_in_excludes: "app not in {'web'}", &[("app", "web")] => false);
matches_case!(has_label: "has(app)", &[("app", "")] => true);
matches_case!(not_has_label: "!has(app)", &[("app", "x")] => false);
matches_case!(not_has_missing: "! has(app)", &[] => true);
matches_case!(all_matches_empty: "all()", &[] => true);
matches_case!(not_all_matches_nothing: "!all()", &[("a", "b")] => false);
matches_case!(global_does_not_match_namespaced: "global()", &[("a", "b")] => false);
matches_case!(contains_substring: "safe.k8s.fmeserver.component contains 'engine'", &[("safe.k8s.fmeserver.component", "engine-standard")] => true);
matches_case!(contains_missing: "c contains 'x'", &[] => false);
matches_case!(starts_with: "name starts with 'prod'", &[("name", "production")] => true);
matches_case!(starts_with_miss: "name starts with 'prod'", &[("name", "preprod")] => false);
matches_case!(ends_with: "name ends with '-0'", &[("name", "core-0")] => true);
matches_case!(and_both: "a == '1' && b == '2'", &[("a", "1"), ("b", "2")] => true);
matches_case!(and_one: "a == '1' && b == '2'", &[("a", "1")] => false);
matches_case!(or_one: "a == '1' || b == '2'", &[("b", "2")] => true);
matches_case!(precedence_and_over_or: "a == '1' || b == '2' && c == '3'", &[("a", "1")] => true);
matches_case!(parentheses_group: "(a == '1' || b == '2') && c == '3'", &[("a", "1")] => false);
matches_case!(not_binds_tighter_than_and: "!has(a) && has(b)", &[("b", "x")] => true);
matches_case!(doc_example: "! has(my-label) || my-label starts with 'prod' && role in {'frontend','business'}", &[("my-label", "prod-1"), ("role", "business")] => true);
matches_case!(doc_example_miss: "! has(my-label) || my-label starts with 'prod' && role in {'frontend','business'}", &[("my-label", "dev")] => false);
matches_case!(keys_with_slashes_and_dots: "statefulset.kubernetes.io/pod-name == 'core-0'", &[("statefulset.kubernetes.io/pod-name", "core-0")] => true);
matches_case!(label_named_like_keyword: "has == 'x' && in == 'y'", &[("has", "x"), ("in", "y")] => true);
matches_case!(empty_selector_is_all: "", &[] => true);
matches_case!(whitespace_and_newlines: "  a=='1'\n&&\tb=='2' ", &[("a", "1"), ("b", "2")] => true);
matches_case!(value_with_spaces_and_symbols: "d == 'x && y || (z)'", &[("d", "x && y || (z)")] => true);

fn err(sel: &str) -> (usize, String, String) {
    match Selector::parse(sel) {
        Ok(s) => panic!("{sel} parsed as {s}"),
        Err(SelectorError::Syntax {
            position,
            expected,
            found,
            ..
        }) => (position, expected, found),
        Err(other) => panic!("{sel}: not a syntax error: {other}"),
    }
}

#[test]
fn error_unquoted_value() {
    let (pos, expected, found) = err("app == web");
    assert_eq!(pos, 7);
    assert!(expected.contains("quoted string"), "{expected}");
    assert_eq!(found, "'web'");
}

#[test]
fn error_single_equals() {
    let (pos, expected, _) = err("app = 'web'");
    assert_eq!(pos, 4);
    assert_eq!(expected, "'=='");
}

#[test]
fn error_unterminated_string() {
    let (pos, expected, found) = err("app == 'web");
    assert_eq!(pos, 7);
    assert!(expected.contains("closing '"), "{expected}");
    assert_eq!(found, "end of selector");
}

#[test]
fn error_missing_operator() {
    let (pos, expected, found) = err("app 'web'");
    assert_eq!(pos, 4);
    assert!(expected.contains("operator"), "{expected}");
    assert!(found.contains("web"));
}

#[test]
fn error_dangling_and() {
    let (pos, expected, found) = err("a == '1' &&");
    assert_eq!(pos, 11);
    assert!(expected.contains("label"), "{expected}");
    assert_eq!(found, "end of selector");
}

#[test]
fn error_unbalanced_paren() {
    let (pos, expected, _) = err("(a == '1'");
    assert_eq!(pos, 9);
    assert_eq!(expected, "')'");
}

#[test]
fn error_trailing_garbage() {
    let (pos, expected, _) = err("a == '1' b == '2'");
    assert_eq!(pos, 9);
    assert!(expected.contains("&&"), "{expected}");
}

#[test]
fn error_bad_set() {
    let (_, expected, _) = err("a in {'1' '2'}");
    assert!(expected.contains("',' or '}'"), "{expected}");
    let (_, expected, _) = err("a in '1'");
    assert!(expected.contains("'{'"), "{expected}");
}

#[test]
fn error_not_without_in() {
    let (_, expected, _) = err("a not '1'");
    assert_eq!(expected, "'in' after 'not'");
}

#[test]
fn error_starts_without_with() {
    let (_, expected, _) = err("a starts 'x'");
    assert_eq!(expected, "'with' after 'starts'");
}

#[test]
fn error_has_without_label() {
    let (_, expected, _) = err("has()");
    assert!(expected.contains("label name"), "{expected}");
}

#[test]
fn error_bad_character() {
    let (pos, _, found) = err("a == '1' ; b");
    assert_eq!(pos, 9);
    assert!(found.contains(';'));
}

#[test]
fn error_single_ampersand_and_pipe() {
    assert_eq!(err("a == '1' & b == '2'").1, "'&&'");
    assert_eq!(err("a == '1' | b == '2'").1, "'||'");
}

#[test]
fn error_message_names_selector_and_position() {
    let e = Selector::parse("app == web").expect_err("must fail");
    let text = e.to_string();
    assert!(text.contains("\"app == web\""), "{text}");
    assert!(text.contains("position 7"), "{text}");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let sel = format!("{}a == '1'{}", "(".repeat(5000), ")".repeat(5000));
    assert!(Selector::parse(&sel).is_err());
    let sel = format!("{}has(a)", "!".repeat(5000));
    assert!(Selector::parse(&sel).is_err());
}

#[test]
fn display_round_trips() {
    for s in [
        "app == 'web'",
        "a == '1' && (b == '2' || !has(c))",
        "x not in {'a', 'b'} || y starts with 'p' && z ends with 'q'",
        "k contains \"it's\"",
        "!(a == '1' && b == '2')",
        "all()",
        "global()",
    ] {
        let parsed = Selector::parse(s).expect("parse");
        let again = Selector::parse(&parsed.to_string()).expect("reparse");
        assert_eq!(parsed, again, "{s} -> {parsed}");
    }
}

struct GlobalThing;
impl LabelView for GlobalThing {
    fn label(&self, _: &str) -> Option<&str> {
        None
    }
    fn is_global(&self) -> bool {
        true
    }
}

#[test]
fn global_matches_non_namespaced() {
    assert!(Selector::parse("global()")
        .expect("parse")
        .matches(&GlobalThing));
}
