//! The engine-neutral query description. The query layer compiles `AggregationRule`s into it and
//! every engine compiles it to its own dialect (DataFusion plans here, ClickHouse SQL later).

use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;
use tally_core::{Interval, ProjectId};

/// A value of the events table: a column, or a path inside a JSON column (`properties`,
/// `context_extra`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldRef {
    Column(String),
    Json { column: String, path: Vec<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    Count,
    /// Distinct `person_id`s.
    UniquePersons,
    Sum(FieldRef),
    Avg(FieldRef),
    Min(FieldRef),
    Max(FieldRef),
    /// Exact percentile with linear interpolation (as PostgreSQL's `percentile_cont`), `0..=1`.
    Percentile(FieldRef, f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum FilterOp {
    Eq(Value),
    /// True also where the field is missing (`IS DISTINCT FROM`).
    Neq(Value),
    In(Vec<Value>),
    /// None of these values (compared as text); a `null` in the list excludes missing values,
    /// which are otherwise included.
    NotIn(Vec<Value>),
    /// Substring match on the text of the field.
    Contains(String),
    Gt(Value),
    Lt(Value),
    Exists,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: FieldRef,
    pub op: FilterOp,
}

/// Aggregate the events of `project` with `from <= timestamp < to` that pass every filter.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateQuery {
    pub project: ProjectId,
    /// Microseconds since the epoch, UTC.
    pub from: i64,
    pub to: i64,
    pub timezone: Tz,
    pub filters: Vec<Filter>,
    pub bucket: Option<Interval>,
    pub group_by: Vec<FieldRef>,
    pub measure: Measure,
    /// At most this many groups (ordered by value, descending) per bucket.
    pub limit: Option<usize>,
}

/// A result: named columns and rows of JSON values. Bucket columns hold RFC 3339 strings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// The events of a project, in `[from, to)`, that match at least one of several steps: the input
/// of funnels. Each step is a conjunction of filters.
#[derive(Debug, Clone, PartialEq)]
pub struct StepQuery {
    pub project: ProjectId,
    pub from: i64,
    pub to: i64,
    pub steps: Vec<Vec<Filter>>,
    /// A field whose text value is returned with each event (for breakdowns).
    pub breakdown: Option<FieldRef>,
}

/// One event of a [`StepQuery`]: whose, when, which steps it matches (bit `i` for step `i`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEvent {
    pub person: String,
    pub timestamp: i64,
    pub steps: u64,
    pub breakdown: Option<String>,
}

/// A rollup to keep up to date as events are written: the events of `project` that pass every
/// filter, grouped by `group_by`, aggregated per UTC hour with `measure`. A query whose project,
/// filters, group-by and measure equal a rollup's, and whose buckets fall on whole hours, can be
/// answered from it (see [`crate::Store::aggregate_from_rollup`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RollupDef {
    pub project: ProjectId,
    pub filters: Vec<Filter>,
    pub group_by: Vec<FieldRef>,
    pub measure: Measure,
}

impl RollupDef {
    /// The rollup `query` could be answered from, if any: the same events, groups and measure.
    pub fn of(query: &AggregateQuery) -> Self {
        Self {
            project: query.project.clone(),
            filters: query.filters.clone(),
            group_by: query.group_by.clone(),
            measure: query.measure.clone(),
        }
    }

    /// Can a rollup compute this measure incrementally? Percentiles need every value.
    pub fn supported(&self) -> Result<(), String> {
        match self.measure {
            Measure::Percentile(..) => {
                Err("percentiles need every value, so they are computed from the raw events".into())
            }
            _ => Ok(()),
        }
    }
}

/// How a rollup is doing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollupStatus {
    /// `ready`, `building` (queries use raw events meanwhile), `failed` or `unsupported`.
    pub state: String,
    /// Hour × group cells held.
    pub cells: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
