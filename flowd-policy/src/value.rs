//! A path-tracking reader over `serde_json::Value`.
//!
//! Each document is read into a `Value` first and checked here field by field,
//! so an error can name the exact field (`spec.ingress[0].ports[1].port`) and a
//! bad object never stops its neighbours from loading.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::FieldError;

#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    pub value: &'a Value,
    path: &'a str,
}

/// Owns the path strings so `Node` can stay `Copy` and cheap.
pub(crate) struct Path(String);

impl Path {
    pub fn root() -> Path {
        Path(String::new())
    }
    pub fn key(parent: &str, key: &str) -> Path {
        if parent.is_empty() {
            Path(key.to_string())
        } else {
            Path(format!("{parent}.{key}"))
        }
    }
    pub fn index(parent: &str, i: usize) -> Path {
        Path(format!("{parent}[{i}]"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub(crate) fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string \"{s}\""),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

impl<'a> Node<'a> {
    pub fn new(value: &'a Value, path: &'a Path) -> Node<'a> {
        Node {
            value,
            path: path.as_str(),
        }
    }

    pub fn path(&self) -> &'a str {
        self.path
    }

    pub fn err(&self, message: impl Into<String>) -> FieldError {
        let path = if self.path.is_empty() {
            "(document)".to_string()
        } else {
            self.path.to_string()
        };
        FieldError::new(path, message)
    }

    pub fn object(&self) -> Result<&'a Map<String, Value>, FieldError> {
        match self.value {
            Value::Object(m) => Ok(m),
            other => Err(self.err(format!("expected a mapping, found {}", type_name(other)))),
        }
    }

    /// A field's value, `None` when absent or null.
    pub fn raw(&self, key: &str) -> Result<Option<&'a Value>, FieldError> {
        Ok(self.object()?.get(key).filter(|v| !v.is_null()))
    }

    pub fn has(&self, key: &str) -> bool {
        matches!(self.raw(key), Ok(Some(_)))
    }

    pub fn as_str(&self) -> Result<&'a str, FieldError> {
        match self.value {
            Value::String(s) => Ok(s),
            other => Err(self.err(format!("expected a string, found {}", type_name(other)))),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.raw(key)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(FieldError::new(
                Path::key(self.path, key).0,
                format!("expected a string, found {}", type_name(other)),
            )),
        }
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, FieldError> {
        match self.raw(key)? {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| FieldError::new(Path::key(self.path, key).0, "number out of range")),
            Some(other) => Err(FieldError::new(
                Path::key(self.path, key).0,
                format!("expected a number, found {}", type_name(other)),
            )),
        }
    }

    /// A map of string to string (labels, matchLabels).
    pub fn opt_string_map(
        &self,
        key: &str,
    ) -> Result<Option<BTreeMap<String, String>>, FieldError> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        let path = Path::key(self.path, key);
        let m = match v {
            Value::Object(m) => m,
            other => {
                return Err(FieldError::new(
                    path.0,
                    format!("expected a mapping of strings, found {}", type_name(other)),
                ))
            }
        };
        let mut out = BTreeMap::new();
        for (k, val) in m {
            match val {
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                other => {
                    return Err(FieldError::new(
                        Path::key(path.as_str(), k).0,
                        format!("expected a string, found {} (quote it)", type_name(other)),
                    ))
                }
            }
        }
        Ok(Some(out))
    }

    pub fn opt_string_list(&self, key: &str) -> Result<Option<Vec<String>>, FieldError> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        let path = Path::key(self.path, key);
        let items = match v {
            Value::Array(a) => a,
            other => {
                return Err(FieldError::new(
                    path.0,
                    format!("expected a list of strings, found {}", type_name(other)),
                ))
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                other => {
                    return Err(FieldError::new(
                        Path::index(path.as_str(), i).0,
                        format!("expected a string, found {}", type_name(other)),
                    ))
                }
            }
        }
        Ok(Some(out))
    }
}

/// Visit a child node; the closure gets a node whose path includes `key`.
pub(crate) fn with_field<'a, T>(
    node: Node<'a>,
    key: &str,
    f: impl FnOnce(Option<Node<'_>>) -> Result<T, FieldError>,
) -> Result<T, FieldError> {
    let path = Path::key(node.path(), key);
    match node.raw(key)? {
        None => f(None),
        Some(v) => f(Some(Node::new(v, &path))),
    }
}

/// Visit each element of a list field; absent or null gives `None`.
pub(crate) fn with_list<T>(
    node: Node<'_>,
    key: &str,
    mut f: impl FnMut(usize, Node<'_>) -> Result<T, FieldError>,
) -> Result<Option<Vec<T>>, FieldError> {
    let path = Path::key(node.path(), key);
    let Some(v) = node.raw(key)? else {
        return Ok(None);
    };
    let items = match v {
        Value::Array(a) => a,
        other => {
            return Err(FieldError::new(
                path.0,
                format!("expected a list, found {}", type_name(other)),
            ))
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = Path::index(path.as_str(), i);
        out.push(f(i, Node::new(item, &p))?);
    }
    Ok(Some(out))
}
