//! The engine-neutral query description. The query layer compiles `AggregationRule`s into it and
//! every engine compiles it to its own dialect (DataFusion plans here, ClickHouse SQL later).

use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;
use tally_core::{Interval, ProjectId};

/// A value of the events table: a column, or a path inside a JSON column (`properties`,
/// `context_extra`, or [`PERSON_COLUMN`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldRef {
    Column(String),
    Json { column: String, path: Vec<String> },
}

/// The JSON column that holds the properties of each event's person (after identity merges),
/// as they are now. Engines add it to the events only for queries that use it.
pub const PERSON_COLUMN: &str = "person";

/// The prefix of the JSON column that holds the properties of each event's group of a type
/// (`group:company`). An event's group of type T is `properties.$groups.T`, else its person's
/// `$groups.T` (set by Segment's `group` call).
pub const GROUP_COLUMN_PREFIX: &str = "group:";

impl FieldRef {
    /// Does this field read the person's properties?
    pub fn is_person(&self) -> bool {
        matches!(self, Self::Json { column, .. } if column == PERSON_COLUMN)
    }

    /// The group type whose properties this field reads, if any.
    pub fn group_type(&self) -> Option<&str> {
        match self {
            Self::Json { column, .. } => column.strip_prefix(GROUP_COLUMN_PREFIX),
            Self::Column(_) => None,
        }
    }
}

/// What a query needs besides the events: person properties, and the properties of groups of
/// some types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookups {
    pub person: bool,
    pub group_types: Vec<String>,
}

impl Lookups {
    fn of<'a>(
        filters: impl IntoIterator<Item = &'a Filter>,
        fields: impl IntoIterator<Item = &'a FieldRef>,
    ) -> Self {
        let mut l = Self::default();
        let all = filters.into_iter().map(|f| &f.field).chain(fields);
        for f in all {
            l.person |= f.is_person();
            if let Some(t) = f.group_type()
                && !l.group_types.iter().any(|g| g == t)
            {
                l.group_types.push(t.to_owned());
                // The group key may come from the person.
                l.person = true;
            }
        }
        l
    }

    pub fn any(&self) -> bool {
        self.person || !self.group_types.is_empty()
    }

    /// What both `self` and `other` need.
    pub fn union(mut self, other: &Lookups) -> Self {
        self.person |= other.person;
        for t in &other.group_types {
            if !self.group_types.contains(t) {
                self.group_types.push(t.clone());
            }
        }
        self
    }
}

impl Measure {
    fn field(&self) -> Option<&FieldRef> {
        match self {
            Self::Count | Self::UniquePersons => None,
            Self::Sum(f) | Self::Avg(f) | Self::Min(f) | Self::Max(f) | Self::Percentile(f, _) => {
                Some(f)
            }
        }
    }
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
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ResultTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// The events of a project, in `[from, to)`, that match at least one of several steps, of the
/// persons who have an event of the first step in the range (no one else can enter a funnel):
/// the input of funnels. Each step is a conjunction of filters.
#[derive(Debug, Clone, PartialEq)]
pub struct StepQuery {
    pub project: ProjectId,
    pub from: i64,
    pub to: i64,
    pub steps: Vec<Vec<Filter>>,
    /// A field whose text value is returned with each event (for breakdowns).
    pub breakdown: Option<FieldRef>,
}

/// The answer to a [`StepQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEvents {
    /// Grouped by person, ordered by time within each person.
    pub events: Vec<StepEvent>,
    /// The distinct breakdown values (null for a missing one), which
    /// [`StepEvent::breakdown`] indexes; `[None]` without a breakdown.
    pub breakdowns: Vec<Option<String>>,
}

/// One event of a [`StepQuery`]: whose, when, which steps it matches (bit `i` for step `i`).
/// Small (24 bytes) since a funnel holds millions of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepEvent {
    /// The person, as a number given out per query: equal numbers, same person.
    pub person: u32,
    /// The index of its breakdown value in [`StepEvents::breakdowns`].
    pub breakdown: u32,
    pub timestamp: i64,
    pub steps: u64,
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

impl AggregateQuery {
    /// What the query reads besides the events.
    pub fn lookups(&self) -> Lookups {
        Lookups::of(
            &self.filters,
            self.group_by.iter().chain(self.measure.field()),
        )
    }

    /// Whether `self` and `other` aggregate the same rows into the same groups and buckets, so
    /// that one scan can answer both (they may differ in their measure and limit).
    pub fn same_groups(&self, other: &AggregateQuery) -> bool {
        self.project == other.project
            && self.from == other.from
            && self.to == other.to
            && self.timezone == other.timezone
            && self.filters == other.filters
            && self.bucket == other.bucket
            && self.group_by == other.group_by
    }
}

impl StepQuery {
    pub fn lookups(&self) -> Lookups {
        Lookups::of(self.steps.iter().flatten(), &self.breakdown)
    }
}

impl SessionQuery {
    pub fn lookups(&self) -> Lookups {
        let breakdown = match &self.breakdown {
            Some(SessionBreakdown::Field(f)) => Some(f),
            _ => None,
        };
        Lookups::of(&self.filters, breakdown)
    }
}

impl PathQuery {
    pub fn lookups(&self) -> Lookups {
        Lookups::of(self.filters.iter().chain(&self.anchor), None)
    }
}

impl RetentionQuery {
    pub fn lookups(&self) -> Lookups {
        Lookups::of(self.cohort.iter().chain(&self.returns), None)
    }
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
        if Lookups::of(
            &self.filters,
            self.group_by.iter().chain(self.measure.field()),
        )
        .any()
        {
            return Err(
                "person and group properties change after the events arrived, so rules that use them are computed from the raw events"
                    .into(),
            );
        }
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

/// The name of the event that records a page view: sessions count pages and paths follow pages
/// through these events.
pub const PAGEVIEW_EVENT: &str = "pageview";

/// How far before and after a query's range events are read to complete the sessions that cross
/// its edges (microseconds). A session is attributed to the range and bucket of its first event.
pub const SESSION_LOOKAROUND_US: i64 = 24 * 3_600_000_000;

/// Sessions of a project that start in `[from, to)`, built from the events that pass every
/// filter (grouped by `session_id`), then summarized per bucket of their start and per breakdown
/// value. Result columns: `bucket` (when bucketed), the breakdown (when given), `sessions`,
/// `avg_duration_seconds`, `median_duration_seconds`, `bounce_rate`, `pages_per_session`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionQuery {
    pub project: ProjectId,
    pub from: i64,
    pub to: i64,
    pub timezone: Tz,
    pub filters: Vec<Filter>,
    pub bucket: Option<Interval>,
    pub breakdown: Option<SessionBreakdown>,
    /// At most this many breakdown values (most sessions first) per bucket.
    pub limit: Option<usize>,
}

/// What sessions are broken down by.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionBreakdown {
    /// The path of the session's first page view.
    EntryPage,
    /// The path of the session's last page view.
    ExitPage,
    /// A field of the session's first event.
    Field(FieldRef),
}

/// Which way a path query looks from its anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathDirection {
    Next,
    Previous,
}

/// The most common events (or pages) that follow (or precede) an anchor within its session.
///
/// The sequence of a session is its events that pass `filters`, in time order; with `pages`, only
/// its page views, items being their paths, with repeated views of the same page in a row counted
/// once. Each item of a session that matches every `anchor` filter and lies in `[from, to)` is
/// an occurrence; step k of it is the item k positions after (before) it, or `$end` (`$start`)
/// where the session ends first. Result columns: `step`, `item`, `count` (occurrences),
/// `persons` (distinct), `share` (of all occurrences); per step the `limit` most common items.
#[derive(Debug, Clone, PartialEq)]
pub struct PathQuery {
    pub project: ProjectId,
    pub from: i64,
    pub to: i64,
    pub filters: Vec<Filter>,
    pub anchor: Vec<Filter>,
    pub pages: bool,
    pub direction: PathDirection,
    pub steps: usize,
    pub limit: usize,
}

/// The item of a path step after the session's last item.
pub const PATH_END: &str = "$end";
/// The item of a path step before the session's first item.
pub const PATH_START: &str = "$start";

/// Retention counted in the engine: each person's cohort is the period of their first `cohort`
/// event in `[from, cohort_to)`; a person is active in a period when a `returns` event in
/// `[from, to)`, at or after that first cohort event, falls in it. Periods are `period` buckets
/// on the calendar of `timezone`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionQuery {
    pub project: ProjectId,
    pub from: i64,
    pub cohort_to: i64,
    pub to: i64,
    pub timezone: Tz,
    pub period: Interval,
    pub cohort: Vec<Filter>,
    pub returns: Vec<Filter>,
}

/// What [`RetentionQuery`] counts; periods are given by their start (µs, UTC).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetentionCounts {
    /// Persons per cohort period.
    pub cohorts: Vec<(i64, u64)>,
    /// Distinct persons per (cohort period, period they were active in).
    pub active: Vec<(i64, i64, u64)>,
}
