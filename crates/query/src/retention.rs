//! Retention: of the persons whose first cohort event in the range fell in a period (their
//! cohort), how many did a return event in that period and in each following one.
//!
//! A person's cohort is the period (`day`, `week` or `month`, on the calendar of the query's time
//! zone) of their first cohort event within the time range. Period k of a cohort counts the
//! persons of the cohort with a return event in the k-th period after the cohort's, at or after
//! their cohort event; period 0 is the cohort's own period. Returns are looked for up to
//! `periods` periods after the range, so the last cohorts are complete.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::time::format_rfc3339;
use tally_core::{FieldError, Interval, ProjectId, TimeRange};
use tally_store::{FieldRef, Filter, FilterOp, ResultTable, StepEvent, StepQuery};

use crate::rule::{FilterSpec, compile_filter};

pub(crate) const MAX_PERIODS: usize = 100;

/// `{"kind": "retention", "name": ..., "period": "week", "periods": 8, "cohort_event": "signup",
///   "return_event": "login"}`; events may also be given as steps with filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionQuery {
    pub name: String,
    pub period: Interval,
    pub periods: usize,
    pub cohort_event: String,
    pub return_event: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cohort_filters: Vec<FilterSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub return_filters: Vec<FilterSpec>,
}

impl RetentionQuery {
    pub(crate) fn compile(
        &self,
        project: &ProjectId,
        range: &TimeRange,
        at: &str,
    ) -> Result<(StepQuery, Vec<DateTime<Utc>>), FieldError> {
        if !matches!(
            self.period,
            Interval::Day | Interval::Week | Interval::Month
        ) {
            return Err(FieldError::new(
                "invalid_period",
                format!("{at}.period"),
                "day, week or month",
            ));
        }
        if self.periods == 0 || self.periods > MAX_PERIODS {
            return Err(FieldError::new(
                "invalid_periods",
                format!("{at}.periods"),
                format!("between 1 and {MAX_PERIODS}"),
            ));
        }
        let step =
            |event: &str, filters: &[FilterSpec], field: &str| -> Result<Vec<Filter>, FieldError> {
                let mut out = vec![Filter {
                    field: FieldRef::Column("event".into()),
                    op: FilterOp::Eq(Value::String(event.to_owned())),
                }];
                for (i, f) in filters.iter().enumerate() {
                    out.push(compile_filter(f, &format!("{at}.{field}[{i}]"))?);
                }
                Ok(out)
            };
        // Period starts from the range's first period until `periods` past its end.
        let mut end = range.to;
        for _ in 0..self.periods {
            end = self
                .period
                .next(self.period.truncate(end, range.timezone), range.timezone)
                .max(end);
        }
        let extended = TimeRange {
            from: range.from,
            to: end,
            timezone: range.timezone,
        };
        let boundaries = self.period.buckets(&extended);
        Ok((
            StepQuery {
                project: project.clone(),
                from: range.from.timestamp_micros(),
                to: end.timestamp_micros(),
                steps: vec![
                    step(&self.cohort_event, &self.cohort_filters, "cohort_filters")?,
                    step(&self.return_event, &self.return_filters, "return_filters")?,
                ],
                breakdown: None,
            },
            boundaries,
        ))
    }

    /// Builds the table from the step events (ordered by person, then time).
    pub(crate) fn evaluate(
        &self,
        events: &[StepEvent],
        boundaries: &[DateTime<Utc>],
        range_end: i64,
    ) -> ResultTable {
        let starts: Vec<i64> = boundaries.iter().map(|b| b.timestamp_micros()).collect();
        let period_of = |ts: i64| starts.partition_point(|s| *s <= ts).saturating_sub(1);
        // cohort period index -> (persons in it, persons active per following period)
        let mut cohorts: BTreeMap<usize, (u64, Vec<u64>)> = BTreeMap::new();
        let mut i = 0;
        while i < events.len() {
            let mut j = i;
            while j < events.len() && events[j].person == events[i].person {
                j += 1;
            }
            let person = &events[i..j];
            if let Some(first) = person
                .iter()
                .find(|e| e.steps & 1 == 1 && e.timestamp < range_end)
            {
                let cohort = period_of(first.timestamp);
                let entry = cohorts
                    .entry(cohort)
                    .or_insert_with(|| (0, vec![0; self.periods]));
                entry.0 += 1;
                let mut active = HashSet::new();
                for e in person
                    .iter()
                    .filter(|e| e.steps & 2 == 2 && e.timestamp >= first.timestamp)
                {
                    let k = period_of(e.timestamp).saturating_sub(cohort);
                    if k < self.periods {
                        active.insert(k);
                    }
                }
                for k in active {
                    entry.1[k] += 1;
                }
            }
            i = j;
        }
        let columns = ["cohort", "size", "period", "persons", "fraction"]
            .map(String::from)
            .to_vec();
        let mut rows = Vec::new();
        for (cohort, (size, active)) in cohorts {
            let start = boundaries
                .get(cohort)
                .map(|b| format_rfc3339(*b))
                .unwrap_or_default();
            for (k, n) in active.iter().enumerate() {
                rows.push(vec![
                    Value::String(start.clone()),
                    Value::from(size),
                    Value::from(k),
                    Value::from(*n),
                    Value::from(*n as f64 / size as f64),
                ]);
            }
        }
        ResultTable { columns, rows }
    }
}
