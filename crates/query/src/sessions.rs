//! Sessions: how many, how long, how many pages, how often a single page and out.
//!
//! A session is what the `EventProcessor` made of a person's events (30 minutes of inactivity end
//! one). Filters pick the events sessions are built from; a session belongs to the bucket of its
//! first event and is counted when that event lies in the range. Its duration runs from its first
//! to its last event; it bounces when it holds one page view and nothing else; its pages are its
//! page views; its entry (exit) page is the path of its first (last) page view.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::time::format_rfc3339;
use tally_core::{FieldError, Interval, ProjectId, TimeRange};
use tally_store::{ResultTable, SessionBreakdown, SessionQuery, Store};

use crate::aggregator::{QueryError, check_buckets};
use crate::fields::resolve_field;
use crate::rule::{FilterSpec, check_name, compile_filters};

/// Breakdown values returned per bucket when no `limit` is given, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `{"kind": "sessions", "name": ..., "interval": "day", "breakdown": "$entry_page", "limit": 10,
///   "filters": [...]}`; `breakdown` is `$entry_page`, `$exit_page` or a field (its value on the
/// session's first event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsQuery {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<String>,
    /// With a breakdown: at most this many values per bucket, most sessions first (default 100,
    /// at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl SessionsQuery {
    pub(crate) fn compile(
        &self,
        project: &ProjectId,
        range: &TimeRange,
        at: &str,
    ) -> Result<SessionQuery, FieldError> {
        check_name(&self.name, at)?;
        if let Some(iv) = self.interval {
            check_buckets(iv, range, at)?;
        }
        let breakdown = match self.breakdown.as_deref() {
            None => None,
            Some("$entry_page") => Some(SessionBreakdown::EntryPage),
            Some("$exit_page") => Some(SessionBreakdown::ExitPage),
            Some(f) => Some(SessionBreakdown::Field(resolve_field(
                f,
                &format!("{at}.breakdown"),
            )?)),
        };
        match self.limit {
            Some(l) if l == 0 || l > MAX_LIMIT => {
                return Err(FieldError::new(
                    "invalid_limit",
                    format!("{at}.limit"),
                    format!("between 1 and {MAX_LIMIT}"),
                ));
            }
            Some(_) if breakdown.is_none() => {
                return Err(FieldError::new(
                    "invalid_limit",
                    format!("{at}.limit"),
                    "`limit` applies to a `breakdown`",
                ));
            }
            _ => {}
        }
        Ok(SessionQuery {
            project: project.clone(),
            from: range.from.timestamp_micros(),
            to: range.to.timestamp_micros(),
            timezone: range.timezone,
            filters: compile_filters(None, &self.filters, at)?,
            bucket: self.interval,
            limit: breakdown
                .is_some()
                .then(|| self.limit.unwrap_or(DEFAULT_LIMIT)),
            breakdown,
        })
    }

    pub(crate) async fn run(
        &self,
        store: &dyn Store,
        project: &ProjectId,
        range: &TimeRange,
        at: &str,
    ) -> Result<ResultTable, QueryError> {
        let q = self.compile(project, range, at)?;
        let mut table = store.sessions(&q).await?;
        if let (Some(iv), None) = (self.interval, &self.breakdown) {
            fill_buckets(&mut table, &iv.buckets(range));
        }
        Ok(table)
    }
}

/// Every bucket of the range gets a row; a bucket without sessions has 0 sessions and no averages.
fn fill_buckets(table: &mut ResultTable, buckets: &[chrono::DateTime<chrono::Utc>]) {
    let width = table.columns.len();
    let mut rows: std::collections::HashMap<String, Vec<Value>> = table
        .rows
        .drain(..)
        .filter_map(|r| Some((r.first()?.as_str()?.to_owned(), r)))
        .collect();
    table.rows = buckets
        .iter()
        .map(|b| {
            let key = format_rfc3339(*b);
            rows.remove(&key).unwrap_or_else(|| {
                let mut row = vec![Value::String(key), Value::from(0)];
                row.resize(width, Value::Null);
                row
            })
        })
        .collect();
}
