//! The string form of Kubernetes label selectors (`kubectl get -l`):
//! `app=web,tier!=db,env in (a,b),env notin (c),key,!key`.
//!
//! It compiles to the same expression tree as Calico selectors and the structured
//! matchLabels/matchExpressions, so one matcher decides every selector flowd reads.

use super::Expr;
use crate::error::SelectorError;

pub(crate) fn parse(selector: &str) -> Result<Expr, SelectorError> {
    let fail = |reason: String| SelectorError::Kubernetes {
        selector: selector.to_owned(),
        reason,
    };
    if selector.trim().is_empty() {
        return Ok(Expr::All);
    }
    let mut requirements = Vec::new();
    for term in split_terms(selector) {
        let term = term.trim();
        let (key, requirement) = requirement(term).map_err(&fail)?;
        if !valid_key(key) {
            return Err(fail(format!("{key:?} is not a label key")));
        }
        requirements.push(requirement);
    }
    Ok(match requirements.len() {
        1 => requirements.remove(0),
        _ => Expr::And(requirements),
    })
}

/// One term and the key it is about.
fn requirement(term: &str) -> Result<(&str, Expr), String> {
    let pair = |key: &str, value: &str| (key.trim().to_owned(), value.trim().to_owned());
    if let Some((key, value)) = term.split_once("!=") {
        let (k, v) = pair(key, value);
        return Ok((key.trim(), Expr::Ne(k, v)));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        let (k, v) = pair(key, value);
        return Ok((key.trim(), Expr::Eq(k, v)));
    }
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        return Ok((key, Expr::Not(Box::new(Expr::Has(key.to_owned())))));
    }
    let Some((key, rest)) = term.split_once(' ') else {
        return Ok((term, Expr::Has(term.to_owned())));
    };
    let key = key.trim();
    let rest = rest.trim();
    let (negated, list) = if let Some(list) = rest.strip_prefix("notin") {
        (true, list)
    } else if let Some(list) = rest.strip_prefix("in") {
        (false, list)
    } else {
        return Err(format!("cannot read {term:?}: expected `in` or `notin`"));
    };
    let list = list
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| format!("{term:?}: values go in parentheses"))?;
    let values = list.split(',').map(|v| v.trim().to_owned()).collect();
    let expr = if negated {
        Expr::NotIn(key.to_owned(), values)
    } else {
        Expr::In(key.to_owned(), values)
    };
    Ok((key, expr))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}
