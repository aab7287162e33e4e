//! Recursive-descent parser for Calico selectors.
//!
//! Grammar (lowest precedence first, as the Calico docs list it):
//! ```text
//! or      := and ( '||' and )*
//! and     := unary ( '&&' unary )*
//! unary   := '!' unary | primary
//! primary := '(' or ')' | 'all' '(' ')' | 'global' '(' ')' | 'has' '(' label ')'
//!          | label ( '==' str | '!=' str | 'in' set | 'not' 'in' set
//!                  | 'contains' str | 'starts' 'with' str | 'ends' 'with' str )
//! set     := '{' [ str ( ',' str )* ] '}'
//! ```

use super::lexer::{tokenize, Spanned, Tok};
use super::Expr;
use crate::error::SelectorError;

pub(crate) fn parse_expr(input: &str) -> Result<Expr, SelectorError> {
    let toks = tokenize(input)?;
    let mut p = Parser {
        input,
        toks,
        at: 0,
        depth: 0,
    };
    if p.peek() == &Tok::Eof {
        // An empty selector selects everything, as Calico treats "" like all().
        return Ok(Expr::All);
    }
    let e = p.or()?;
    if p.peek() != &Tok::Eof {
        return Err(p.error("'&&', '||' or end of selector"));
    }
    Ok(e)
}

// Deep nesting would recurse without bound on hostile input.
const MAX_DEPTH: usize = 200;

struct Parser<'a> {
    input: &'a str,
    toks: Vec<Spanned>,
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.toks.get(self.at).map(|s| &s.tok).unwrap_or(&Tok::Eof)
    }

    fn peek2(&self) -> &Tok {
        self.toks
            .get(self.at + 1)
            .map(|s| &s.tok)
            .unwrap_or(&Tok::Eof)
    }

    fn pos(&self) -> usize {
        self.toks
            .get(self.at)
            .map(|s| s.pos)
            .unwrap_or(self.input.chars().count())
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.at < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn error(&self, expected: &str) -> SelectorError {
        SelectorError::Syntax {
            selector: self.input.to_string(),
            position: self.pos(),
            expected: expected.to_string(),
            found: self.peek().describe(),
        }
    }

    fn expect(&mut self, tok: Tok, expected: &str) -> Result<(), SelectorError> {
        if self.peek() == &tok {
            self.bump();
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            Tok::Str(s) => {
                let s = s.clone();
                self.bump();
                Ok(s)
            }
            _ => Err(self.error("a quoted string")),
        }
    }

    fn or(&mut self) -> Result<Expr, SelectorError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("a shallower expression (nesting too deep)"));
        }
        let mut parts = vec![self.and()?];
        while self.peek() == &Tok::OrOr {
            self.bump();
            parts.push(self.and()?);
        }
        self.depth -= 1;
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, SelectorError> {
        let mut parts = vec![self.unary()?];
        while self.peek() == &Tok::AndAnd {
            self.bump();
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, SelectorError> {
        if self.peek() == &Tok::Bang {
            self.bump();
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.error("a shallower expression (nesting too deep)"));
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, SelectorError> {
        match self.peek().clone() {
            Tok::LParen => {
                self.bump();
                let e = self.or()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::Ident(word) => {
                // A function call only when '(' follows: a label may be named "has".
                if self.peek2() == &Tok::LParen {
                    match word.as_str() {
                        "all" | "global" => {
                            self.bump();
                            self.bump();
                            self.expect(Tok::RParen, "')' (all() and global() take no argument)")?;
                            return Ok(if word == "all" {
                                Expr::All
                            } else {
                                Expr::Global
                            });
                        }
                        "has" => {
                            self.bump();
                            self.bump();
                            let key = match self.peek() {
                                Tok::Ident(k) => k.clone(),
                                _ => return Err(self.error("a label name inside has(...)")),
                            };
                            self.bump();
                            self.expect(Tok::RParen, "')' after the label in has(...)")?;
                            return Ok(Expr::Has(key));
                        }
                        _ => {}
                    }
                }
                self.bump();
                self.comparison(word)
            }
            _ => Err(self.error("a label, '!', '(', all(), global() or has(...)")),
        }
    }

    fn comparison(&mut self, key: String) -> Result<Expr, SelectorError> {
        const OPS: &str =
            "an operator (==, !=, in, not in, contains, starts with, ends with) after the label";
        match self.peek().clone() {
            Tok::EqEq => {
                self.bump();
                Ok(Expr::Eq(key, self.string()?))
            }
            Tok::NotEq => {
                self.bump();
                Ok(Expr::Ne(key, self.string()?))
            }
            Tok::Ident(w) => match w.as_str() {
                "in" => {
                    self.bump();
                    Ok(Expr::In(key, self.set()?))
                }
                "not" => {
                    self.bump();
                    match self.peek() {
                        Tok::Ident(w2) if w2 == "in" => {
                            self.bump();
                            Ok(Expr::NotIn(key, self.set()?))
                        }
                        _ => Err(self.error("'in' after 'not'")),
                    }
                }
                "contains" => {
                    self.bump();
                    Ok(Expr::Contains(key, self.string()?))
                }
                "starts" | "ends" => {
                    self.bump();
                    match self.peek() {
                        Tok::Ident(w2) if w2 == "with" => {
                            self.bump();
                        }
                        _ => return Err(self.error(&format!("'with' after '{w}'"))),
                    }
                    let v = self.string()?;
                    Ok(if w == "starts" {
                        Expr::StartsWith(key, v)
                    } else {
                        Expr::EndsWith(key, v)
                    })
                }
                _ => Err(self.error(OPS)),
            },
            _ => Err(self.error(OPS)),
        }
    }

    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        self.expect(Tok::LBrace, "'{' to start the set of values")?;
        let mut vals = Vec::new();
        if self.peek() == &Tok::RBrace {
            self.bump();
            return Ok(vals);
        }
        loop {
            vals.push(self.string()?);
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RBrace => {
                    self.bump();
                    return Ok(vals);
                }
                _ => return Err(self.error("',' or '}' in the set of values")),
            }
        }
    }
}
