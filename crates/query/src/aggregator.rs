//! The origin's `Aggregator.aggregate(rules, time_range)`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::time::{TimeRangeSpec, format_rfc3339};
use tally_core::{FieldError, ProjectId, TimeRange};
use tally_store::{Measure, ResultTable, Store, StoreError};

use crate::funnel::FunnelQuery;
use crate::retention::RetentionQuery;
use crate::rule::AggregationRule;

/// At most this many rules in one request.
pub const MAX_RULES: usize = 50;
/// At most this many buckets per rule (a year of hours fits).
pub const MAX_BUCKETS: usize = 10_000;

/// `POST /v1/query`'s body. `rules` may mix kinds; each result is keyed by its name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub time_range: TimeRangeSpec,
    pub rules: Vec<QueryItem>,
}

/// One entry of `rules`: an aggregation rule (no `kind`, or `"kind": "trend"`) or a funnel
/// (`"kind": "funnel"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum QueryItem {
    Rule(AggregationRule),
    Funnel(FunnelQuery),
    Retention(RetentionQuery),
}

impl QueryItem {
    pub fn name(&self) -> &str {
        match self {
            Self::Rule(r) => &r.name,
            Self::Funnel(f) => &f.name,
            Self::Retention(r) => &r.name,
        }
    }
}

impl<'de> Deserialize<'de> for QueryItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut v = serde_json::Map::<String, Value>::deserialize(d)?;
        let kind = match v.remove("kind") {
            None => "trend".to_owned(),
            Some(Value::String(k)) => k,
            Some(_) => return Err(D::Error::custom("`kind` must be a string")),
        };
        let v = Value::Object(v);
        match kind.as_str() {
            "trend" => parse_item(v).map(Self::Rule),
            "funnel" => parse_item(v).map(Self::Funnel),
            "retention" => parse_item(v).map(Self::Retention),
            other => Err(D::Error::custom(format!(
                "unknown kind `{other}`: use trend, funnel or retention"
            ))),
        }
    }
}

/// Parses one item; errors say where inside it, since the request's path ends at the item.
fn parse_item<T: serde::de::DeserializeOwned, E: serde::de::Error>(v: Value) -> Result<T, E> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            E::custom(inner)
        } else {
            E::custom(format!("{path}: {inner}"))
        }
    })
}

/// `POST /v1/query`'s answer: each result under its rule's name.
#[derive(Debug, Clone, Serialize)]
pub struct QueryResponse {
    pub results: BTreeMap<String, ResultTable>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs aggregation rules over a store.
#[derive(Debug, Clone)]
pub struct Aggregator {
    store: Arc<dyn Store>,
}

impl Aggregator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Validates and runs a request.
    pub async fn run(
        &self,
        project: &ProjectId,
        request: &QueryRequest,
    ) -> Result<QueryResponse, QueryError> {
        let range = TimeRange::from_spec(&request.time_range, "time_range")?;
        check_names(request.rules.iter().map(QueryItem::name))?;
        let rules: Vec<AggregationRule> = request
            .rules
            .iter()
            .filter_map(|i| match i {
                QueryItem::Rule(r) => Some(r.clone()),
                QueryItem::Funnel(_) | QueryItem::Retention(_) => None,
            })
            .collect();
        let mut results = if rules.is_empty() {
            BTreeMap::new()
        } else {
            self.aggregate(project, &rules, &range).await?.results
        };
        for (i, item) in request.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let end = range.to.timestamp_micros();
            match item {
                QueryItem::Rule(_) => {}
                QueryItem::Funnel(f) => {
                    let (q, window) = f.compile(project, &range, &at)?;
                    let events = self.store.step_events(&q).await?;
                    results.insert(f.name.clone(), f.evaluate(&events, window, end));
                }
                QueryItem::Retention(r) => {
                    let (q, periods) = r.compile(project, &range, &at)?;
                    let events = self.store.step_events(&q).await?;
                    results.insert(r.name.clone(), r.evaluate(&events, &periods, end));
                }
            }
        }
        Ok(QueryResponse { results })
    }

    /// Applies every rule to the project's events in `range`.
    pub async fn aggregate(
        &self,
        project: &ProjectId,
        rules: &[AggregationRule],
        range: &TimeRange,
    ) -> Result<QueryResponse, QueryError> {
        if rules.is_empty() || rules.len() > MAX_RULES {
            return Err(FieldError::new(
                "invalid_rules",
                "rules",
                format!("between 1 and {MAX_RULES} rules"),
            )
            .into());
        }
        check_names(rules.iter().map(|r| r.name.as_str()))?;
        let mut queries = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            if let Some(iv) = rule.interval {
                let n = iv.buckets(range).len();
                if n > MAX_BUCKETS {
                    return Err(FieldError::new(
                        "too_many_buckets",
                        format!("{at}.interval"),
                        format!(
                            "the range has {n} {} buckets; at most {MAX_BUCKETS}",
                            iv.as_str()
                        ),
                    )
                    .into());
                }
            }
            queries.push(rule.compile(project, range, &at)?);
        }
        let tables =
            futures::future::try_join_all(queries.iter().map(|q| self.store.aggregate(q))).await?;
        let mut results = BTreeMap::new();
        for ((rule, q), mut table) in rules.iter().zip(&queries).zip(tables) {
            // Group columns are named as the rule names them (`context.country`).
            let mut columns = Vec::with_capacity(rule.group_by.len() + 2);
            if rule.interval.is_some() {
                columns.push("bucket".to_owned());
            }
            columns.extend(rule.group_by.iter().cloned());
            columns.push("value".to_owned());
            table.columns = columns;
            if let (Some(iv), true) = (rule.interval, rule.group_by.is_empty()) {
                fill_buckets(&mut table, &iv.buckets(range), &q.measure);
            }
            results.insert(rule.name.clone(), table);
        }
        Ok(QueryResponse { results })
    }
}

fn check_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), QueryError> {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        if !seen.insert(name) {
            return Err(FieldError::new(
                "duplicate_name",
                format!("rules[{i}].name"),
                format!("two rules are named `{name}`"),
            )
            .into());
        }
    }
    if seen.is_empty() || seen.len() > MAX_RULES {
        return Err(FieldError::new(
            "invalid_rules",
            "rules",
            format!("between 1 and {MAX_RULES} rules"),
        )
        .into());
    }
    Ok(())
}

/// A time series without groups gets a row for every bucket of the range: 0 for counts, null
/// for measures of nothing.
fn fill_buckets(table: &mut ResultTable, buckets: &[chrono::DateTime<chrono::Utc>], m: &Measure) {
    let empty = match m {
        Measure::Count | Measure::UniquePersons => Value::from(0),
        _ => Value::Null,
    };
    let mut by_bucket: BTreeMap<String, Value> = table
        .rows
        .drain(..)
        .filter_map(|r| match (r.first(), r.get(1)) {
            (Some(Value::String(b)), Some(v)) => Some((b.clone(), v.clone())),
            _ => None,
        })
        .collect();
    table.rows = buckets
        .iter()
        .map(|b| {
            let key = format_rfc3339(*b);
            let v = by_bucket.remove(&key).unwrap_or_else(|| empty.clone());
            vec![Value::String(key), v]
        })
        .collect();
}
