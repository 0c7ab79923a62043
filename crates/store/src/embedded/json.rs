//! Lookups of a path in the JSON text columns (`properties` and the person and group properties
//! joined to events) for filters, group-bys and measures: `json_number(json, 'a', 'b')` and
//! `json_text(json, 'a', 'b')`.
//!
//! They give what datafusion-functions-json's `json_get_float` and `json_as_text` give for valid
//! JSON (a test compares them on random documents and paths), and Tally used those before: the
//! first member whose key matches; a path element that reaches an array indexes it when it spells
//! an integer (a negative one counts from the end); as text, a string decoded, JSON null as SQL
//! null and any other value as its JSON text; as a number, a number or a string that parses as one.
//!
//! Why not those: the stored JSON is small objects of compact text (`{"value":4.33,"plan":"pro"}`),
//! and a full tokenizer spent a quarter of the time of a percentile query decoding the keys and
//! numbers it then skipped. This scanner compares key bytes in place, skips values by their
//! delimiters and parses only the value found. What it skips it does not validate; JSON it cannot
//! follow gives SQL null, never an error. Unlike jiter it has no nesting limit (jiter gives up
//! past 200 levels) and reads an integer of any length as a float (jiter refuses 4300 digits).

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, Float64Array, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ExpressionPlacement, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// One element of a path: a member's key, which indexes an array when it spells an integer.
struct Step {
    key: String,
    index: Option<isize>,
}

impl Step {
    fn new(key: String) -> Self {
        let index = key.parse().ok();
        Self { key, index }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index after the closing quote of the string that opens at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match *b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The index after the value that starts at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while let Some(&c) = b.get(j) {
                match c {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while !matches!(
                b.get(j),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The text of the JSON string `quoted` (with its quotes), decoded.
fn decode(quoted: &str) -> Option<Cow<'_, str>> {
    let inner = quoted.get(1..quoted.len().checked_sub(1)?)?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// The start of the value of the member `key` of the object that opens at `i`.
fn member(s: &str, i: usize, key: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = skip_ws(b, i + 1);
    loop {
        if *b.get(i)? != b'"' {
            return None;
        }
        let end = string_end(b, i)?;
        let raw = &b[i + 1..end - 1];
        let found = if raw.contains(&b'\\') {
            decode(s.get(i..end)?).is_some_and(|k| k == key)
        } else {
            raw == key.as_bytes()
        };
        i = skip_ws(b, end);
        if *b.get(i)? != b':' {
            return None;
        }
        i = skip_ws(b, i + 1);
        if found {
            return Some(i);
        }
        i = skip_ws(b, value_end(b, i)?);
        if *b.get(i)? != b',' {
            return None;
        }
        i = skip_ws(b, i + 1);
    }
}

/// The start of element `index` of the array that opens at `i`.
fn element(b: &[u8], i: usize, index: isize) -> Option<usize> {
    let index = match usize::try_from(index) {
        Ok(index) => index,
        Err(_) => array_len(b, i)?.checked_add_signed(index)?,
    };
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return None;
    }
    for _ in 0..index {
        i = skip_ws(b, value_end(b, i)?);
        if *b.get(i)? != b',' {
            return None;
        }
        i = skip_ws(b, i + 1);
    }
    Some(i)
}

fn array_len(b: &[u8], i: usize) -> Option<usize> {
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some(0);
    }
    let mut len = 0;
    loop {
        i = skip_ws(b, value_end(b, i)?);
        len += 1;
        match *b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b']' => return Some(len),
            _ => return None,
        }
    }
}

/// The JSON text of the value at `path` in `s`.
fn find<'j>(s: &'j str, path: &[Step]) -> Option<&'j str> {
    let b = s.as_bytes();
    let mut i = skip_ws(b, 0);
    for step in path {
        i = match *b.get(i)? {
            b'{' => member(s, i, &step.key)?,
            b'[' => element(b, i, step.index?)?,
            _ => return None,
        };
    }
    s.get(i..value_end(b, i)?)
}

fn number(s: &str, path: &[Step]) -> Option<f64> {
    let v = find(s, path)?;
    match v.as_bytes().first()? {
        b'"' => decode(v)?.parse().ok(),
        b'-' | b'0'..=b'9' => {
            let mut fraction = false;
            for c in v.bytes() {
                match c {
                    b'.' | b'e' | b'E' => fraction = true,
                    b'0'..=b'9' | b'-' | b'+' => {}
                    // Not a JSON number (`-inf`, `-nan`).
                    _ => return None,
                }
            }
            let f: f64 = v.parse().ok()?;
            // An integer token is an integer: `-0` is 0, not -0.0.
            Some(if fraction || f != 0.0 { f } else { 0.0 })
        }
        _ => None,
    }
}

fn text<'j>(s: &'j str, path: &[Step]) -> Option<Cow<'j, str>> {
    let v = find(s, path)?;
    match v.as_bytes().first()? {
        b'"' => decode(v),
        b'n' if v == "null" => None,
        _ => Some(Cow::Borrowed(v)),
    }
}

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Kind {
    Number,
    Text,
}

impl Kind {
    /// The value at `steps` in each of `docs`.
    fn lookup<'a>(
        self,
        docs: impl ExactSizeIterator<Item = Option<&'a str>>,
        steps: &[Step],
    ) -> Arc<dyn Array> {
        match self {
            Kind::Number => Arc::new(
                docs.map(|j| j.and_then(|j| number(j, steps)))
                    .collect::<Float64Array>(),
            ),
            Kind::Text => {
                let mut b = StringBuilder::with_capacity(docs.len(), 0);
                for j in docs {
                    b.append_option(j.and_then(|j| text(j, steps)));
                }
                Arc::new(b.finish())
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonLookup {
    kind: Kind,
    signature: Signature,
}

impl ScalarUDFImpl for JsonLookup {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Number => "json_number",
            Kind::Text => "json_text",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::Number => DataType::Float64,
            Kind::Text => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some((json, path)) = args.args.split_first() else {
            return exec_err!("{} needs a JSON column and a path", self.name());
        };
        let mut steps = Vec::with_capacity(path.len());
        for p in path {
            let step = match p {
                ColumnarValue::Scalar(s) => match s.try_as_str() {
                    Some(Some(key)) => Step::new(key.to_owned()),
                    // A null element finds nothing.
                    Some(None) => {
                        let null = ScalarValue::try_from(&self.return_type(&[])?)?;
                        return Ok(ColumnarValue::Scalar(null));
                    }
                    None => return exec_err!("{}: a path element is not text", self.name()),
                },
                ColumnarValue::Array(_) => {
                    return exec_err!("{}: the path must be literals", self.name());
                }
            };
            steps.push(step);
        }
        let json = json.to_array(args.number_rows)?;
        let out = match json.data_type() {
            DataType::Utf8View => self.kind.lookup(json.as_string_view().iter(), &steps),
            DataType::Utf8 => self.kind.lookup(json.as_string::<i32>().iter(), &steps),
            _ => {
                let json = cast(&json, &DataType::Utf8)?;
                self.kind.lookup(json.as_string::<i32>().iter(), &steps)
            }
        };
        Ok(ColumnarValue::Array(out))
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        // As datafusion-functions-json's: a lookup of literals in a column is cheap enough to
        // evaluate where the column is read.
        match args.split_first() {
            Some((ExpressionPlacement::Column, path))
                if !path.is_empty() && path.iter().all(|p| *p == ExpressionPlacement::Literal) =>
            {
                ExpressionPlacement::MoveTowardsLeafNodes
            }
            _ => ExpressionPlacement::KeepInPlace,
        }
    }
}

fn udf(kind: Kind) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(JsonLookup {
        kind,
        signature: Signature::variadic_any(Volatility::Immutable),
    }))
}

static NUMBER: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| udf(Kind::Number));
static TEXT: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| udf(Kind::Text));

/// `json_number(json, key...)`: the number at the path, else null.
pub(crate) fn json_number_udf() -> Arc<ScalarUDF> {
    NUMBER.clone()
}

/// `json_text(json, key...)`: the text of the value at the path (a string decoded), else null.
pub(crate) fn json_text_udf() -> Arc<ScalarUDF> {
    TEXT.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;
    use datafusion_functions_json::udfs::{json_as_text_udf, json_get_float_udf};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn steps(path: &[&str]) -> Vec<Step> {
        path.iter().map(|p| Step::new((*p).to_owned())).collect()
    }

    /// The results of `udf` over `docs` at `path`, as JSON values (null for SQL null).
    fn call(udf: &ScalarUDF, docs: &[Option<String>], path: &[&str]) -> Vec<Value> {
        let mut args = vec![ColumnarValue::Array(Arc::new(
            docs.iter().cloned().collect::<StringArray>(),
        ))];
        args.extend(
            path.iter()
                .map(|p| ColumnarValue::Scalar(ScalarValue::Utf8(Some((*p).to_owned())))),
        );
        let arg_fields = (0..args.len())
            .map(|i| Arc::new(Field::new(format!("a{i}"), DataType::Utf8, true)))
            .collect();
        let ret = udf.return_type(&vec![DataType::Utf8; args.len()]).unwrap();
        let out = udf
            .invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields,
                number_rows: docs.len(),
                return_field: Arc::new(Field::new("out", ret, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap()
            .to_array(docs.len())
            .unwrap();
        (0..out.len())
            .map(|i| match ScalarValue::try_from_array(&out, i).unwrap() {
                ScalarValue::Float64(Some(f)) => json!(f),
                ScalarValue::Utf8(Some(s)) => json!(s),
                _ => Value::Null,
            })
            .collect()
    }

    #[test]
    fn finds_members_elements_and_nested_values() {
        let doc = r#"{"value":4.33,"plan":"pro","tags":["a","b\"c",{"x":[1,2]}],"n":null,"o":{"k":true}}"#;
        let at = |path: &[&str]| text(doc, &steps(path)).map(|t| t.into_owned());
        assert_eq!(at(&["value"]).as_deref(), Some("4.33"));
        assert_eq!(at(&["plan"]).as_deref(), Some("pro"));
        assert_eq!(at(&["tags", "1"]).as_deref(), Some("b\"c"));
        assert_eq!(at(&["tags", "-1", "x", "1"]).as_deref(), Some("2"));
        assert_eq!(at(&["tags", "3"]), None);
        assert_eq!(at(&["o"]).as_deref(), Some(r#"{"k":true}"#));
        assert_eq!(at(&["o", "k"]).as_deref(), Some("true"));
        assert_eq!(at(&["n"]), None);
        assert_eq!(at(&["missing"]), None);
        assert_eq!(at(&["plan", "x"]), None);
        assert_eq!(number(doc, &steps(&["value"])), Some(4.33));
        assert_eq!(number(doc, &steps(&["plan"])), None);
        assert_eq!(number(r#"{"v":"12.5"}"#, &steps(&["v"])), Some(12.5));
        assert_eq!(number(r#" { "v" : -3e2 } "#, &steps(&["v"])), Some(-300.0));
        // An integer `-0` is zero; `-0.0` keeps its sign (as jiter).
        let bits = |doc: &str| number(doc, &steps(&["v"])).map(f64::to_bits);
        assert_eq!(bits(r#"{"v":-0}"#), Some(0.0f64.to_bits()));
        assert_eq!(bits(r#"{"v":-0.0}"#), Some((-0.0f64).to_bits()));
        assert_eq!(number(r#"{"v":-inf}"#, &steps(&["v"])), None);
        assert_eq!(number(r#"{"v":-nan}"#, &steps(&["v"])), None);
        // An escaped key matches its decoded text.
        assert_eq!(number(r#"{"\u0076":1}"#, &steps(&["v"])), Some(1.0));
        // The first of two equal keys wins.
        assert_eq!(number(r#"{"v":1,"v":2}"#, &steps(&["v"])), Some(1.0));
    }

    #[test]
    fn malformed_json_gives_null() {
        // What is not reached is not read: `{"a":1` has an `a` (as with a full tokenizer).
        assert_eq!(number(r#"{"a":1"#, &steps(&["a"])), Some(1.0));
        for doc in [
            "",
            "{",
            r#"{"v""#,
            r#"{"v":"#,
            r#"{"b":1"#,
            "[1,",
            r#"{"a" 1}"#,
            "\"v",
        ] {
            assert_eq!(text(doc, &steps(&["v"])), None, "{doc}");
            assert_eq!(number(doc, &steps(&["a"])), None, "{doc}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(vec!["a", "b", "value", "plan", "0", "é", "a\"b", ""]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            prop::sample::select(vec![
                "pro",
                "",
                "x\\y",
                "line\nbreak",
                "12.5",
                "ünï",
                "\"q\""
            ])
            .prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(4, 32, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..5).prop_map(|members| {
                    Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    proptest! {
        /// Same results as datafusion-functions-json on valid JSON, compact or pretty.
        #[test]
        fn matches_datafusion_functions_json(
            docs in prop::collection::vec(json_value(), 1..8),
            path in prop::collection::vec(
                prop::sample::select(vec!["a", "b", "value", "0", "1", "-1", "é", "a\"b", ""]),
                0..4,
            ),
            pretty in any::<bool>(),
        ) {
            let mut docs: Vec<Option<String>> = docs
                .iter()
                .map(|d| Some(if pretty {
                    serde_json::to_string_pretty(d).unwrap()
                } else {
                    d.to_string()
                }))
                .collect();
            docs.push(None);
            prop_assert_eq!(
                call(&json_number_udf(), &docs, &path),
                call(&json_get_float_udf(), &docs, &path)
            );
            prop_assert_eq!(
                call(&json_text_udf(), &docs, &path),
                call(&json_as_text_udf(), &docs, &path)
            );
        }
    }
}
