//! Paths: what persons do next (or did before) around a given event or page, within a session.
//!
//! Items are event names (`"by": "event"`) or the paths of page views (`"by": "page"`, where a
//! page viewed again right after itself counts once). Every item in the range that matches the
//! anchor is an occurrence; step k is the item k positions after (before) it in its session, or
//! `$end` (`$start`) where the session ends first. Per step the most common items are returned
//! with their count, distinct persons and share of all occurrences.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::{FieldError, ProjectId, TimeRange};
use tally_store::{
    FieldRef, Filter, FilterOp, PAGEVIEW_EVENT, PathDirection, PathQuery, ResultTable, Store,
};

use crate::aggregator::QueryError;
use crate::rule::{FilterSpec, check_name, compile_filters};

pub(crate) const MAX_STEPS: usize = 5;
pub(crate) const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 10;

/// `{"kind": "paths", "name": ..., "anchor": {"page": "/pricing"}, "direction": "next",
///   "steps": 2, "limit": 10}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsQuery {
    pub name: String,
    pub anchor: PathAnchor,
    #[serde(default)]
    pub direction: Direction,
    /// `event` or `page`; `page` when the anchor names a page, else `event`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<PathItems>,
    /// How many items after (before) the anchor, 1 to 5.
    #[serde(default = "one")]
    pub steps: usize,
    /// The most common items per step (default 10, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Which events make up the sessions' sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSpec>,
}

fn one() -> usize {
    1
}

/// The event or page paths start from: an event name, a page's path, more filters, or all three.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathAnchor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Next,
    Previous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathItems {
    Event,
    Page,
}

impl PathsQuery {
    pub(crate) fn compile(
        &self,
        project: &ProjectId,
        range: &TimeRange,
        at: &str,
    ) -> Result<PathQuery, FieldError> {
        check_name(&self.name, at)?;
        let by = self.by.unwrap_or(if self.anchor.page.is_some() {
            PathItems::Page
        } else {
            PathItems::Event
        });
        let anchor_at = format!("{at}.anchor");
        if by == PathItems::Page
            && self
                .anchor
                .event
                .as_deref()
                .is_some_and(|e| e != PAGEVIEW_EVENT)
        {
            return Err(FieldError::new(
                "invalid_anchor",
                format!("{anchor_at}.event"),
                format!(
                    "paths by page follow `{PAGEVIEW_EVENT}` events only; name the page with `anchor.page`"
                ),
            ));
        }
        let mut anchor = compile_filters(
            self.anchor.event.as_deref(),
            &self.anchor.filters,
            &anchor_at,
        )?;
        if let Some(page) = &self.anchor.page {
            anchor.push(Filter {
                field: FieldRef::Column("path".into()),
                op: FilterOp::Eq(Value::String(page.clone())),
            });
        }
        if anchor.is_empty() {
            return Err(FieldError::new(
                "invalid_anchor",
                anchor_at,
                "an anchor needs an `event`, a `page` or `filters`",
            ));
        }
        if self.steps == 0 || self.steps > MAX_STEPS {
            return Err(FieldError::new(
                "invalid_steps",
                format!("{at}.steps"),
                format!("between 1 and {MAX_STEPS}"),
            ));
        }
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(FieldError::new(
                "invalid_limit",
                format!("{at}.limit"),
                format!("between 1 and {MAX_LIMIT}"),
            ));
        }
        Ok(PathQuery {
            project: project.clone(),
            from: range.from.timestamp_micros(),
            to: range.to.timestamp_micros(),
            filters: compile_filters(None, &self.filters, at)?,
            anchor,
            pages: by == PathItems::Page,
            direction: match self.direction {
                Direction::Next => PathDirection::Next,
                Direction::Previous => PathDirection::Previous,
            },
            steps: self.steps,
            limit,
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
        let mut table = store.paths(&q).await?;
        if let Some(c) = table.columns.get_mut(1) {
            *c = if q.pages { "page" } else { "event" }.to_owned();
        }
        Ok(table)
    }
}
