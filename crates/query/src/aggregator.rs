//! The origin's `Aggregator.aggregate(rules, time_range)`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::time::{TimeRangeSpec, format_rfc3339};
use tally_core::{FieldError, ProjectId, TimeRange};
use tally_store::{Measure, ResultTable, Store, StoreError};

use crate::rule::AggregationRule;

/// At most this many rules in one request.
pub const MAX_RULES: usize = 50;
/// At most this many buckets per rule (a year of hours fits).
pub const MAX_BUCKETS: usize = 10_000;

/// `POST /v1/query`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub time_range: TimeRangeSpec,
    pub rules: Vec<AggregationRule>,
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
        self.aggregate(project, &request.rules, &range).await
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
        let mut names = HashSet::new();
        let mut queries = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            if !names.insert(rule.name.as_str()) {
                return Err(FieldError::new(
                    "duplicate_name",
                    format!("{at}.name"),
                    format!("two rules are named `{}`", rule.name),
                )
                .into());
            }
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
