//! The origin's `Aggregator.aggregate(rules, time_range)`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::time::TimeRangeSpec;
use tally_core::{FieldError, Interval, ProjectId, TimeRange};
use tally_store::{ResultTable, Store, StoreError};

use crate::activity::ActivityQuery;
use crate::formula::FormulaQuery;
use crate::funnel::FunnelQuery;
use crate::paths::PathsQuery;
use crate::retention::RetentionQuery;
use crate::rule::AggregationRule;
use crate::sessions::SessionsQuery;

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
    /// Compute every result from the raw events, never from a rollup (rollups count distinct
    /// persons with a sketch; raw events count them exactly).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exact: bool,
}

/// One entry of `rules`: an aggregation rule (no `kind`, or `"kind": "trend"`), or another kind
/// named by `kind`.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryItem {
    Rule(AggregationRule),
    Funnel(FunnelQuery),
    Retention(RetentionQuery),
    Formula(FormulaQuery),
    Sessions(SessionsQuery),
    Paths(PathsQuery),
    Stickiness(ActivityQuery),
    Lifecycle(ActivityQuery),
}

impl QueryItem {
    pub fn name(&self) -> &str {
        match self {
            Self::Rule(r) => &r.name,
            Self::Funnel(f) => &f.name,
            Self::Retention(r) => &r.name,
            Self::Formula(f) => &f.name,
            Self::Sessions(s) => &s.name,
            Self::Paths(p) => &p.name,
            Self::Stickiness(s) => &s.name,
            Self::Lifecycle(l) => &l.name,
        }
    }
}

impl QueryItem {
    /// Checks the item as it would run for `project` over `range`, without running it; errors
    /// name fields below `at` (the item's path in the request). A formula's operands are
    /// checked when it runs, against the request it is part of.
    pub fn check(
        &self,
        project: &ProjectId,
        range: &TimeRange,
        at: &str,
    ) -> Result<(), FieldError> {
        match self {
            Self::Rule(r) => {
                r.compile(project, range, at)?;
                if let Some(iv) = r.interval {
                    check_buckets(iv, range, at)?;
                }
            }
            Self::Funnel(f) => {
                f.compile(project, range, at)?;
            }
            Self::Retention(r) => {
                r.compile(project, range, at)?;
            }
            Self::Formula(_) => {}
            Self::Sessions(s) => {
                s.compile(project, range, at)?;
            }
            Self::Paths(p) => {
                p.compile(project, range, at)?;
            }
            Self::Stickiness(a) | Self::Lifecycle(a) => {
                a.compile(range, at)?;
            }
        }
        Ok(())
    }

    /// The `kind` this item is written with.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rule(_) => "trend",
            Self::Funnel(_) => "funnel",
            Self::Retention(_) => "retention",
            Self::Formula(_) => "formula",
            Self::Sessions(_) => "sessions",
            Self::Paths(_) => "paths",
            Self::Stickiness(_) => "stickiness",
            Self::Lifecycle(_) => "lifecycle",
        }
    }
}

/// Written as it is read: the item's fields with its `kind` (none for a rule).
impl Serialize for QueryItem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let v = match self {
            Self::Rule(r) => serde_json::to_value(r),
            Self::Funnel(f) => serde_json::to_value(f),
            Self::Retention(r) => serde_json::to_value(r),
            Self::Formula(f) => serde_json::to_value(f),
            Self::Sessions(x) => serde_json::to_value(x),
            Self::Paths(p) => serde_json::to_value(p),
            Self::Stickiness(a) | Self::Lifecycle(a) => serde_json::to_value(a),
        }
        .map_err(S::Error::custom)?;
        let mut v = v;
        if let (Value::Object(m), false) = (&mut v, matches!(self, Self::Rule(_))) {
            m.insert("kind".into(), Value::String(self.kind().into()));
        }
        v.serialize(s)
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
            "formula" => parse_item(v).map(Self::Formula),
            "sessions" => parse_item(v).map(Self::Sessions),
            "paths" => parse_item(v).map(Self::Paths),
            "stickiness" => parse_item(v).map(Self::Stickiness),
            "lifecycle" => parse_item(v).map(Self::Lifecycle),
            other => Err(D::Error::custom(format!(
                "unknown kind `{other}`: use trend, funnel, retention, formula, sessions, paths, \
                 stickiness or lifecycle"
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
    /// The names of the results that a rollup answered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_rollups: Vec<String>,
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
        // Every item is checked before any runs: a bad last item costs no work.
        for (i, item) in request.rules.iter().enumerate() {
            item.check(project, &range, &format!("rules[{i}]"))?;
        }
        let rules: Vec<AggregationRule> = request
            .rules
            .iter()
            .filter_map(|i| match i {
                QueryItem::Rule(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        let (mut results, from_rollups) = if rules.is_empty() {
            (BTreeMap::new(), Vec::new())
        } else {
            let r = self
                .aggregate_with(project, &rules, &range, !request.exact)
                .await?;
            (r.results, r.from_rollups)
        };
        let store = self.store.as_ref();
        for (i, item) in request.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let table = match item {
                QueryItem::Rule(_) | QueryItem::Formula(_) => continue,
                QueryItem::Funnel(f) => {
                    let (q, window) = f.compile(project, &range, &at)?;
                    let events = store.step_events(&q).await?;
                    let started = std::time::Instant::now();
                    let table = f.evaluate(&events, window, range.to.timestamp_micros());
                    tracing::debug!(
                        events = events.events.len(),
                        evaluate_ms = started.elapsed().as_secs_f64() * 1e3,
                        "funnel evaluated"
                    );
                    table
                }
                QueryItem::Retention(r) => {
                    let (q, periods) = r.compile(project, &range, &at)?;
                    let counts = store.retention(&q).await?;
                    r.evaluate(&counts, &periods)
                }
                QueryItem::Sessions(s) => s.run(store, project, &range, &at).await?,
                QueryItem::Paths(p) => p.run(store, project, &range, &at).await?,
                QueryItem::Stickiness(a) => a.stickiness(store, project, &range, &at).await?,
                QueryItem::Lifecycle(a) => a.lifecycle(store, project, &range, &at).await?,
            };
            results.insert(item.name().to_owned(), table);
        }
        let trends: HashSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        for (i, item) in request.rules.iter().enumerate() {
            if let QueryItem::Formula(f) = item {
                let table = f.evaluate(&results, &trends, &format!("rules[{i}]"))?;
                results.insert(f.name.clone(), table);
            }
        }
        Ok(QueryResponse {
            results,
            from_rollups,
        })
    }

    /// Applies every rule to the project's events in `range` (from rollups where they can answer).
    pub async fn aggregate(
        &self,
        project: &ProjectId,
        rules: &[AggregationRule],
        range: &TimeRange,
    ) -> Result<QueryResponse, QueryError> {
        self.aggregate_with(project, rules, range, true).await
    }

    async fn aggregate_with(
        &self,
        project: &ProjectId,
        rules: &[AggregationRule],
        range: &TimeRange,
        use_rollups: bool,
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
                check_buckets(iv, range, &at)?;
            }
            queries.push(rule.compile(project, range, &at)?);
        }
        let store = self.store.as_ref();
        // The plain series that no rollup answers are asked of the store at once, so that rules
        // differing only in their measure (p50 and p95 of one property) share one scan.
        let mut mains: Vec<Option<(ResultTable, bool)>> = vec![None; rules.len()];
        let mut scanned = Vec::new();
        for (i, (rule, q)) in rules.iter().zip(&queries).enumerate() {
            if !crate::trends::is_plain(rule, q) {
                continue;
            }
            match crate::trends::from_rollup(store, q, use_rollups) {
                Some(t) => mains[i] = Some((t, true)),
                None => scanned.push(i),
            }
        }
        if !scanned.is_empty() {
            let qs: Vec<_> = scanned.iter().map(|&i| queries[i].clone()).collect();
            for (&i, t) in scanned.iter().zip(store.aggregate_many(&qs).await?) {
                mains[i] = Some((t, false));
            }
        }
        let outcomes = futures::future::try_join_all(rules.iter().zip(&queries).zip(mains).map(
            |((rule, q), main)| crate::trends::trend(store, rule, q, range, use_rollups, main),
        ))
        .await?;
        let mut results = BTreeMap::new();
        let mut from_rollups = Vec::new();
        for (rule, (mut table, rolled)) in rules.iter().zip(outcomes) {
            // Group columns are named as the rule names them (`context.country`).
            let offset = usize::from(rule.interval.is_some());
            for (i, g) in rule.group_by.iter().enumerate() {
                if let Some(c) = table.columns.get_mut(offset + i) {
                    c.clone_from(g);
                }
            }
            if rolled {
                from_rollups.push(rule.name.clone());
            }
            results.insert(rule.name.clone(), table);
        }
        Ok(QueryResponse {
            results,
            from_rollups,
        })
    }
}

/// Refuses an interval that cuts the range into more than [`MAX_BUCKETS`] buckets.
pub(crate) fn check_buckets(iv: Interval, range: &TimeRange, at: &str) -> Result<(), FieldError> {
    // Counted without building the list: a minute interval over centuries must not allocate.
    if iv.bucket_starts(range).nth(MAX_BUCKETS).is_some() {
        return Err(FieldError::new(
            "too_many_buckets",
            format!("{at}.interval"),
            format!(
                "the range has more than {MAX_BUCKETS} {} buckets",
                iv.as_str()
            ),
        ));
    }
    Ok(())
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
