//! Stickiness and lifecycle: what persons' activity per period says about them.
//!
//! A person is active in a period (an `interval` bucket on the calendar of the query's time zone)
//! when they have an event there that passes the query's event and filters.
//!
//! - **Stickiness**: for n = 1 .. the number of periods in the range, how many persons were active
//!   in exactly n of them.
//! - **Lifecycle**, per period of the range (widened to whole periods), each active person is
//!   `new` (never active before, across all stored history), `returning` (active in the previous
//!   period too) or `resurrecting` (active before, but not in the previous period); `dormant`
//!   counts the persons active in the previous period and not in this one.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::time::format_rfc3339;
use tally_core::{Interval, ProjectId, TimeRange};
use tally_store::{AggregateQuery, FieldRef, Filter, Measure, ResultTable, Store};

use crate::aggregator::{QueryError, check_buckets};
use crate::rule::{FilterSpec, check_name, compile_filters};

/// `{"kind": "stickiness" | "lifecycle", "name": ..., "event": "login", "interval": "week",
///   "filters": [...]}`: both kinds take the same fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityQuery {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSpec>,
    #[serde(default = "day")]
    pub interval: Interval,
}

fn day() -> Interval {
    Interval::Day
}

/// The persons active in `[from, to)` with the indices of the periods (`starts`) they were
/// active in; without `starts`, just the persons.
async fn active_persons(
    store: &dyn Store,
    project: &ProjectId,
    filters: &[Filter],
    range: &TimeRange,
    bucket: Option<(Interval, &[DateTime<Utc>])>,
) -> Result<HashMap<String, Vec<usize>>, QueryError> {
    let q = AggregateQuery {
        project: project.clone(),
        from: range.from.timestamp_micros(),
        to: range.to.timestamp_micros(),
        timezone: range.timezone,
        filters: filters.to_vec(),
        bucket: bucket.map(|(iv, _)| iv),
        group_by: vec![FieldRef::Column("person_id".into())],
        measure: Measure::Count,
        limit: None,
    };
    let table = store.aggregate(&q).await?;
    let index: HashMap<String, usize> = bucket
        .map(|(_, starts)| {
            starts
                .iter()
                .enumerate()
                .map(|(i, s)| (format_rfc3339(*s), i))
                .collect()
        })
        .unwrap_or_default();
    let mut out: HashMap<String, Vec<usize>> = HashMap::new();
    for row in table.rows {
        let (period, person) = match bucket {
            Some(_) => (
                row.first()
                    .and_then(Value::as_str)
                    .and_then(|b| index.get(b).copied()),
                row.get(1),
            ),
            None => (None, row.first()),
        };
        let Some(person) = person.and_then(Value::as_str) else {
            continue;
        };
        let periods = out.entry(person.to_owned()).or_default();
        periods.extend(period);
    }
    Ok(out)
}

impl ActivityQuery {
    /// Checks the item and compiles its event and filters.
    pub(crate) fn compile(
        &self,
        range: &TimeRange,
        at: &str,
    ) -> Result<Vec<Filter>, tally_core::FieldError> {
        check_name(&self.name, at)?;
        check_buckets(self.interval, range, at)?;
        compile_filters(self.event.as_deref(), &self.filters, at)
    }

    /// Stickiness: persons by the number of intervals they were active in.
    pub(crate) async fn stickiness(
        &self,
        store: &dyn Store,
        project: &ProjectId,
        range: &TimeRange,
        at: &str,
    ) -> Result<ResultTable, QueryError> {
        let filters = self.compile(range, at)?;
        let starts = self.interval.buckets(range);
        let active = active_persons(
            store,
            project,
            &filters,
            range,
            Some((self.interval, &starts)),
        )
        .await?;
        let mut persons = vec![0u64; starts.len()];
        for periods in active.values() {
            // One row per (period, person), so this counts distinct periods.
            if let Some(slot) = periods
                .len()
                .checked_sub(1)
                .and_then(|i| persons.get_mut(i))
            {
                *slot += 1;
            }
        }
        let total: u64 = persons.iter().sum();
        let rows = persons
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let share = if total == 0 {
                    Value::Null
                } else {
                    Value::from(*n as f64 / total as f64)
                };
                vec![Value::from(i + 1), Value::from(*n), share]
            })
            .collect();
        Ok(ResultTable {
            columns: ["periods", "persons", "share"].map(String::from).to_vec(),
            rows,
        })
    }

    /// Lifecycle: new, returning, resurrecting and dormant persons per interval.
    pub(crate) async fn lifecycle(
        &self,
        store: &dyn Store,
        project: &ProjectId,
        range: &TimeRange,
        at: &str,
    ) -> Result<ResultTable, QueryError> {
        let filters = self.compile(range, at)?;
        let iv = self.interval;
        let tz = range.timezone;
        let first = iv.truncate(range.from, tz);
        let previous = iv.truncate(first - Duration::microseconds(1), tz);
        // The last interval runs to its end, even past the range.
        let last = iv.truncate(range.to - Duration::microseconds(1), tz);
        let whole = TimeRange {
            from: first,
            to: iv.next(last, tz).max(range.to),
            timezone: tz,
        };
        let starts = iv.buckets(&whole);
        let at_range = |from, to| TimeRange {
            from,
            to,
            timezone: tz,
        };
        let (now, before, earlier) = futures::future::try_join3(
            active_persons(store, project, &filters, &whole, Some((iv, &starts))),
            active_persons(store, project, &filters, &at_range(previous, first), None),
            active_persons(
                store,
                project,
                &filters,
                &at_range(DateTime::UNIX_EPOCH, previous),
                None,
            ),
        )
        .await?;
        let n = starts.len();
        // Per period: new, returning, resurrecting, dormant.
        let mut counts = vec![[0u64; 4]; n];
        let persons: HashSet<&String> = now.keys().chain(before.keys()).collect();
        for person in persons {
            let mut active = vec![false; n];
            for &p in now.get(person).into_iter().flatten() {
                active[p] = true;
            }
            let mut previously = before.contains_key(person);
            let mut seen = previously || earlier.contains_key(person);
            for (p, &is_active) in active.iter().enumerate() {
                let kind = match (is_active, seen, previously) {
                    (true, false, _) => Some(0),
                    (true, true, true) => Some(1),
                    (true, true, false) => Some(2),
                    (false, _, true) => Some(3),
                    (false, _, false) => None,
                };
                if let Some(k) = kind {
                    counts[p][k] += 1;
                }
                seen |= is_active;
                previously = is_active;
            }
        }
        let rows = starts
            .iter()
            .zip(counts)
            .map(|(s, c)| {
                let mut row = vec![Value::String(format_rfc3339(*s))];
                row.extend(c.map(Value::from));
                row
            })
            .collect();
        Ok(ResultTable {
            columns: ["bucket", "new", "returning", "resurrecting", "dormant"]
                .map(String::from)
                .to_vec(),
            rows,
        })
    }
}
