//! The Calico selector language: parse once, evaluate many times.
//!
//! Kubernetes label selectors (matchLabels / matchExpressions, and the string
//! form `kubectl -l` takes) compile to the same expression tree, so every
//! selector flowd reads shares one matcher.

mod kubernetes;
mod lexer;
mod parser;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use crate::error::SelectorError;

/// A parsed selector expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `all()`: every in-scope resource.
    All,
    /// `global()`: only non-namespaced resources.
    Global,
    Has(String),
    Eq(String, String),
    /// Also matches when the label is absent (Calico and Kubernetes agree).
    Ne(String, String),
    In(String, Vec<String>),
    /// Also matches when the label is absent.
    NotIn(String, Vec<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// Something that has labels a selector can look at.
pub trait LabelView {
    fn label(&self, key: &str) -> Option<&str>;
    /// True for non-namespaced resources; only `global()` looks at it.
    fn is_global(&self) -> bool {
        false
    }
}

impl LabelView for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> LabelView for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A compiled selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    expr: Expr,
}

impl Selector {
    /// Parse Calico selector syntax. An empty string selects all.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        Ok(Selector {
            expr: parser::parse_expr(text)?,
        })
    }

    /// Parse the Kubernetes string form, e.g. `app=web,env in (a,b),!canary`. An empty
    /// string selects all.
    pub fn parse_kubernetes(text: &str) -> Result<Selector, SelectorError> {
        Ok(Selector {
            expr: kubernetes::parse(text)?,
        })
    }

    pub fn all() -> Selector {
        Selector { expr: Expr::All }
    }

    pub fn from_expr(expr: Expr) -> Selector {
        Selector { expr }
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    pub fn is_all(&self) -> bool {
        self.expr == Expr::All
    }

    pub fn matches<L: LabelView + ?Sized>(&self, labels: &L) -> bool {
        eval(&self.expr, labels)
    }
}

fn eval<L: LabelView + ?Sized>(e: &Expr, l: &L) -> bool {
    match e {
        Expr::All => true,
        Expr::Global => l.is_global(),
        Expr::Has(k) => l.label(k).is_some(),
        Expr::Eq(k, v) => l.label(k) == Some(v.as_str()),
        Expr::Ne(k, v) => l.label(k) != Some(v.as_str()),
        Expr::In(k, vs) => l.label(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Expr::NotIn(k, vs) => !l.label(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Expr::Contains(k, s) => l.label(k).is_some_and(|x| x.contains(s.as_str())),
        Expr::StartsWith(k, s) => l.label(k).is_some_and(|x| x.starts_with(s.as_str())),
        Expr::EndsWith(k, s) => l.label(k).is_some_and(|x| x.ends_with(s.as_str())),
        Expr::Not(inner) => !eval(inner, l),
        Expr::And(parts) => parts.iter().all(|p| eval(p, l)),
        Expr::Or(parts) => parts.iter().any(|p| eval(p, l)),
    }
}

fn quote(s: &str) -> String {
    // Calico strings have no escapes, so pick the quote the value lacks.
    if s.contains('\'') {
        format!("\"{s}\"")
    } else {
        format!("'{s}'")
    }
}

fn fmt_set(vs: &[String]) -> String {
    vs.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::All => write!(f, "all()"),
            Expr::Global => write!(f, "global()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => write!(f, "{k} == {}", quote(v)),
            Expr::Ne(k, v) => write!(f, "{k} != {}", quote(v)),
            Expr::In(k, vs) => write!(f, "{k} in {{{}}}", fmt_set(vs)),
            Expr::NotIn(k, vs) => write!(f, "{k} not in {{{}}}", fmt_set(vs)),
            Expr::Contains(k, v) => write!(f, "{k} contains {}", quote(v)),
            Expr::StartsWith(k, v) => write!(f, "{k} starts with {}", quote(v)),
            Expr::EndsWith(k, v) => write!(f, "{k} ends with {}", quote(v)),
            Expr::Not(inner) => match **inner {
                Expr::And(_) | Expr::Or(_) => write!(f, "!({inner})"),
                _ => write!(f, "!{inner}"),
            },
            Expr::And(parts) => {
                let s: Vec<String> = parts
                    .iter()
                    .map(|p| match p {
                        Expr::Or(_) => format!("({p})"),
                        _ => p.to_string(),
                    })
                    .collect();
                write!(f, "{}", s.join(" && "))
            }
            Expr::Or(parts) => {
                let s: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
                write!(f, "{}", s.join(" || "))
            }
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}
