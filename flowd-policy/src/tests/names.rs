use crate::Verdict;

/// The API carries these names as strings: they must stay what they were (the Debug names).
#[test]
fn side_action_names_are_the_variant_names() {
    for verdict in [
        Verdict::Allow,
        Verdict::Deny,
        Verdict::EndOfTierDeny,
        Verdict::NoPolicy,
        Verdict::ProfileAllow,
        Verdict::NotApplicable,
    ] {
        assert_eq!(verdict.as_str(), format!("{verdict:?}"));
    }
}
