//! Tokenizer for the Calico selector language.
//!
//! Keywords (`in`, `not`, `contains`, `has`, `all`, ...) are lexed as plain
//! identifiers: whether a word is a keyword depends on where it stands (a label
//! may be called `has` or `in`), so the parser decides.

use crate::error::SelectorError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    EqEq,
    NotEq,
    Bang,
    AndAnd,
    OrOr,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Eof,
}

impl Tok {
    /// How the token is named in "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::EqEq => "'=='".into(),
            Tok::NotEq => "'!='".into(),
            Tok::Bang => "'!'".into(),
            Tok::AndAnd => "'&&'".into(),
            Tok::OrOr => "'||'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::Comma => "','".into(),
            Tok::Eof => "end of selector".into(),
        }
    }
}

/// A token and the character offset (0-based) where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Spanned {
    pub tok: Tok,
    pub pos: usize,
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

pub(crate) fn tokenize(input: &str) -> Result<Vec<Spanned>, SelectorError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |pos: usize, expected: &str, found: String| SelectorError::Syntax {
        selector: input.to_string(),
        position: pos,
        expected: expected.to_string(),
        found,
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '(' => out.push(Spanned {
                tok: Tok::LParen,
                pos: start,
            }),
            ')' => out.push(Spanned {
                tok: Tok::RParen,
                pos: start,
            }),
            '{' => out.push(Spanned {
                tok: Tok::LBrace,
                pos: start,
            }),
            '}' => out.push(Spanned {
                tok: Tok::RBrace,
                pos: start,
            }),
            ',' => out.push(Spanned {
                tok: Tok::Comma,
                pos: start,
            }),
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    i += 1;
                    out.push(Spanned {
                        tok: Tok::EqEq,
                        pos: start,
                    });
                } else {
                    return Err(err(start, "'=='", "a single '='".into()));
                }
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    i += 1;
                    out.push(Spanned {
                        tok: Tok::NotEq,
                        pos: start,
                    });
                } else {
                    out.push(Spanned {
                        tok: Tok::Bang,
                        pos: start,
                    });
                }
            }
            '&' => {
                if chars.get(i + 1) == Some(&'&') {
                    i += 1;
                    out.push(Spanned {
                        tok: Tok::AndAnd,
                        pos: start,
                    });
                } else {
                    return Err(err(start, "'&&'", "a single '&'".into()));
                }
            }
            '|' => {
                if chars.get(i + 1) == Some(&'|') {
                    i += 1;
                    out.push(Spanned {
                        tok: Tok::OrOr,
                        pos: start,
                    });
                } else {
                    return Err(err(start, "'||'", "a single '|'".into()));
                }
            }
            '\'' | '"' => {
                let quote = c;
                let mut j = i + 1;
                let mut s = String::new();
                while j < chars.len() && chars[j] != quote {
                    s.push(chars[j]);
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(err(
                        start,
                        &format!("closing {quote} for the string starting here"),
                        "end of selector".into(),
                    ));
                }
                i = j;
                out.push(Spanned {
                    tok: Tok::Str(s),
                    pos: start,
                });
            }
            c if is_ident_char(c) => {
                let mut j = i;
                let mut s = String::new();
                while j < chars.len() && is_ident_char(chars[j]) {
                    s.push(chars[j]);
                    j += 1;
                }
                i = j - 1;
                out.push(Spanned {
                    tok: Tok::Ident(s),
                    pos: start,
                });
            }
            other => {
                return Err(err(
                    start,
                    "a label, operator, string, '(' or ')'",
                    format!("unexpected character '{other}'"),
                ));
            }
        }
        i += 1;
    }
    out.push(Spanned {
        tok: Tok::Eof,
        pos: chars.len(),
    });
    Ok(out)
}
