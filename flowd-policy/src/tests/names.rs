use crate::Ruling;

/// The API carries these names as strings: they must stay what they were (the Debug names).
#[test]
fn side_action_names_are_the_variant_names() {
    for verdict in [
        Ruling::Allow,
        Ruling::Deny,
        Ruling::EndOfTierDeny,
        Ruling::NoPolicy,
        Ruling::ProfileAllow,
        Ruling::NotApplicable,
    ] {
        assert_eq!(verdict.as_str(), format!("{verdict:?}"));
    }
}
