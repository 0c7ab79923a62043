//! Retention: of the persons whose first cohort event in the range fell in a period (their
//! cohort), how many did a return event in that period and in each following one.
//!
//! A person's cohort is the period (`day`, `week` or `month`, on the calendar of the query's time
//! zone) of their first cohort event within the time range. Period k of a cohort counts the
//! persons of the cohort with a return event in the k-th period after the cohort's, at or after
//! their cohort event; period 0 is the cohort's own period. Returns are looked for up to
//! `periods` periods after the range, so the last cohorts are complete.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::time::format_rfc3339;
use tally_core::{FieldError, Interval, ProjectId, TimeRange};
use tally_store::{ResultTable, RetentionCounts, RetentionQuery as StoreRetention};

use crate::rule::{FilterSpec, compile_filters_at};

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
    ) -> Result<(StoreRetention, Vec<DateTime<Utc>>), FieldError> {
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
        let cohort = compile_filters_at(
            Some(&self.cohort_event),
            &self.cohort_filters,
            &format!("{at}.cohort_filters"),
        )?;
        let returns = compile_filters_at(
            Some(&self.return_event),
            &self.return_filters,
            &format!("{at}.return_filters"),
        )?;
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
            StoreRetention {
                project: project.clone(),
                from: range.from.timestamp_micros(),
                cohort_to: range.to.timestamp_micros(),
                to: end.timestamp_micros(),
                timezone: range.timezone,
                period: self.period,
                cohort,
                returns,
            },
            boundaries,
        ))
    }

    /// Builds the table from the engine's counts.
    pub(crate) fn evaluate(
        &self,
        counts: &RetentionCounts,
        boundaries: &[DateTime<Utc>],
    ) -> ResultTable {
        let starts: Vec<i64> = boundaries.iter().map(|b| b.timestamp_micros()).collect();
        let period_of = |ts: i64| starts.partition_point(|s| *s <= ts).saturating_sub(1);
        // cohort period index -> (persons in it, persons active per following period)
        let mut cohorts: BTreeMap<usize, (u64, Vec<u64>)> = BTreeMap::new();
        for &(start, size) in &counts.cohorts {
            let entry = cohorts
                .entry(period_of(start))
                .or_insert_with(|| (0, vec![0; self.periods]));
            entry.0 += size;
        }
        for &(cohort, active, persons) in &counts.active {
            let (c, a) = (period_of(cohort), period_of(active));
            if let (Some(entry), Some(k)) = (cohorts.get_mut(&c), a.checked_sub(c))
                && k < self.periods
            {
                entry.1[k] += persons;
            }
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
