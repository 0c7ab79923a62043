//! Formulas across the trend results of one request: `{"kind": "formula", "name": "conversion",
//! "formula": "purchases / visitors * 100"}`. Names refer to other results of the request; `+ - * /`,
//! parentheses and numbers are allowed. Rows are matched by bucket and group values; a series
//! without a row for a key counts as 0 there; division by zero gives null.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::FieldError;
use tally_store::ResultTable;

/// At most this many characters in a formula.
const MAX_FORMULA_LEN: usize = 1000;
/// At most this many nested parentheses and signs (so parsing never exhausts the stack).
const MAX_NESTING: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormulaQuery {
    pub name: String,
    pub formula: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Num(f64),
    Ref(String),
    Neg(Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
    depth: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            self.chars.next();
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.chars.peek().map(|(_, c)| *c)
    }

    /// expr := term (('+' | '-') term)*
    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.chars.next();
            left = Expr::Bin(op, Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    /// term := unary (('*' | '/') unary)*
    fn term(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while let Some(op @ ('*' | '/')) = self.peek() {
            self.chars.next();
            left = Expr::Bin(op, Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!("nested more than {MAX_NESTING} levels deep"));
        }
        let e = self.atom();
        self.depth -= 1;
        e
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some('-') => {
                self.chars.next();
                Ok(Expr::Neg(Box::new(self.unary()?)))
            }
            Some('(') => {
                self.chars.next();
                let e = self.expr()?;
                match self.peek() {
                    Some(')') => {
                        self.chars.next();
                        Ok(e)
                    }
                    _ => Err("a `(` is not closed".into()),
                }
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let start = self.chars.peek().map_or(0, |(i, _)| *i);
                let mut end = start;
                while let Some((i, c)) = self.chars.peek().copied() {
                    if c.is_ascii_digit() || c == '.' {
                        end = i + c.len_utf8();
                        self.chars.next();
                    } else {
                        break;
                    }
                }
                self.text[start..end]
                    .parse()
                    .map(Expr::Num)
                    .map_err(|_| format!("`{}` is not a number", &self.text[start..end]))
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let start = self.chars.peek().map_or(0, |(i, _)| *i);
                let mut end = start;
                while let Some((i, c)) = self.chars.peek().copied() {
                    if c.is_alphanumeric() || c == '_' {
                        end = i + c.len_utf8();
                        self.chars.next();
                    } else {
                        break;
                    }
                }
                Ok(Expr::Ref(self.text[start..end].to_owned()))
            }
            Some(c) => Err(format!("unexpected `{c}`")),
            None => Err("the formula ends too early".into()),
        }
    }
}

fn parse(text: &str) -> Result<Expr, String> {
    let mut p = Parser {
        chars: text.char_indices().peekable(),
        text,
        depth: 0,
    };
    let e = p.expr()?;
    match p.peek() {
        None => Ok(e),
        Some(c) => Err(format!("unexpected `{c}`")),
    }
}

fn refs(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Num(_) => {}
        Expr::Ref(r) => {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        Expr::Neg(x) => refs(x, out),
        Expr::Bin(_, a, b) => {
            refs(a, out);
            refs(b, out);
        }
    }
}

fn eval(e: &Expr, vars: &BTreeMap<&str, f64>) -> Option<f64> {
    match e {
        Expr::Num(n) => Some(*n),
        Expr::Ref(r) => vars.get(r.as_str()).copied(),
        Expr::Neg(x) => eval(x, vars).map(|v| -v),
        Expr::Bin(op, a, b) => {
            let (a, b) = (eval(a, vars)?, eval(b, vars)?);
            match op {
                '+' => Some(a + b),
                '-' => Some(a - b),
                '*' => Some(a * b),
                _ if b == 0.0 => None,
                _ => Some(a / b),
            }
        }
    }
}

impl FormulaQuery {
    /// Evaluates the formula over `results` (the request's trend results). `trends` names the
    /// results a formula may use; `at` is the item's path in the request.
    pub(crate) fn evaluate(
        &self,
        results: &BTreeMap<String, ResultTable>,
        trends: &HashSet<&str>,
        at: &str,
    ) -> Result<ResultTable, FieldError> {
        let field = format!("{at}.formula");
        if self.formula.len() > MAX_FORMULA_LEN {
            return Err(FieldError::new(
                "invalid_formula",
                field,
                format!("at most {MAX_FORMULA_LEN} characters"),
            ));
        }
        let expr = parse(&self.formula)
            .map_err(|m| FieldError::new("invalid_formula", field.clone(), m))?;
        let mut names = Vec::new();
        refs(&expr, &mut names);
        let mut tables = Vec::new();
        for n in &names {
            match results.get(n) {
                Some(t) if trends.contains(n.as_str()) => tables.push((n.as_str(), t)),
                _ => {
                    return Err(FieldError::new(
                        "unknown_series",
                        field,
                        format!("`{n}` is not the name of a trend rule of this request"),
                    ));
                }
            }
        }
        let Some((_, first)) = tables.first() else {
            // Only numbers: one value.
            return Ok(ResultTable {
                columns: vec!["value".into()],
                rows: vec![vec![num(eval(&expr, &BTreeMap::new()))]],
            });
        };
        // Key columns: everything before `value`.
        let key_len = first.columns.iter().position(|c| c == "value").unwrap_or(0);
        for (n, t) in &tables {
            if t.columns.get(..key_len) != first.columns.get(..key_len) {
                return Err(FieldError::new(
                    "incompatible_series",
                    field,
                    format!(
                        "`{n}` has other buckets or groups ({:?}) than `{}` ({:?})",
                        &t.columns[..t.columns.len().min(key_len)],
                        tables[0].0,
                        &first.columns[..key_len]
                    ),
                ));
            }
        }
        let mut keys: Vec<Vec<Value>> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut values: BTreeMap<(&str, String), f64> = BTreeMap::new();
        for (n, t) in &tables {
            for row in &t.rows {
                let key = row[..key_len].to_vec();
                let text = Value::Array(key.clone()).to_string();
                if let Some(v) = row.get(key_len).and_then(Value::as_f64) {
                    values.insert((n, text.clone()), v);
                }
                if seen.insert(text) {
                    keys.push(key);
                }
            }
        }
        let rows = keys
            .into_iter()
            .map(|key| {
                let text = Value::Array(key.clone()).to_string();
                let vars: BTreeMap<&str, f64> = tables
                    .iter()
                    .map(|(n, _)| (*n, values.get(&(*n, text.clone())).copied().unwrap_or(0.0)))
                    .collect();
                let mut row = key;
                row.push(num(eval(&expr, &vars)));
                row
            })
            .collect();
        let mut columns = first.columns[..key_len].to_vec();
        columns.push("value".into());
        Ok(ResultTable { columns, rows })
    }
}

fn num(v: Option<f64>) -> Value {
    v.and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, f64)]) -> BTreeMap<&'static str, f64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn precedence_parentheses_and_errors() {
        let e = parse("a + b * 2").unwrap();
        assert_eq!(eval(&e, &vars(&[("a", 1.0), ("b", 3.0)])), Some(7.0));
        let e = parse("(a + b) * -2").unwrap();
        assert_eq!(eval(&e, &vars(&[("a", 1.0), ("b", 3.0)])), Some(-8.0));
        let e = parse("a / b").unwrap();
        assert_eq!(eval(&e, &vars(&[("a", 1.0), ("b", 0.0)])), None);
        assert!(parse("a +").is_err());
        assert!(parse("(a").is_err());
        assert!(parse("a $ b").is_err());
        assert!(parse("1.2.3").is_err());
        let deep = format!("{}a{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&deep).unwrap_err().contains("nested"));
        assert!(parse(&"-".repeat(500)).is_err());
    }
}
