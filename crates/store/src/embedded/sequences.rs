//! Queries over the order of events within sessions: session summaries and paths.
//!
//! Both read the events of the range widened by [`SESSION_LOOKAROUND_US`] on each side, so a
//! session that crosses the range's edge is seen whole (up to that margin), and both group by the
//! `session_id` the `EventProcessor` assigned.

use datafusion::arrow::datatypes::DataType;
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::{
    avg, count, count_distinct, first_value, max, median, min, sum,
};
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::functions_window::expr_fn::{lag, lead};
use datafusion::logical_expr::{Expr, ExprFunctionExt, SortExpr, cast, ident, lit, when};
use datafusion::prelude::DataFrame;
use serde_json::Value;

use super::engine::{As, bucket_expr, field_expr, filter_expr, json_rows, order_and_limit, ts_lit};
use crate::Result;
use crate::plan::{
    PAGEVIEW_EVENT, PATH_END, PATH_START, PathDirection, PathQuery, ResultTable, SessionBreakdown,
    SessionQuery,
};
use crate::schema::col;

/// The events of `frame` (the project's events of a query's range widened by
/// [`crate::plan::SESSION_LOOKAROUND_US`] on each side) that pass `filters`.
fn widened(frame: DataFrame, filters: &[crate::Filter]) -> Result<DataFrame> {
    let mut pred = lit(true);
    for f in filters {
        pred = pred.and(filter_expr(f)?);
    }
    Ok(frame.filter(pred)?)
}

fn by_time() -> Vec<SortExpr> {
    vec![ident(col::TIMESTAMP).sort(true, false)]
}

fn is_pageview() -> Expr {
    ident(col::EVENT).eq(lit(PAGEVIEW_EVENT))
}

/// Summarizes the sessions that start in the range (see [`SessionQuery`]).
pub(crate) async fn sessions(frame: DataFrame, q: &SessionQuery) -> Result<ResultTable> {
    let pages = sum(when(is_pageview(), lit(1i64)).otherwise(lit(0i64))?);
    let mut per_session = vec![
        min(ident(col::TIMESTAMP)).alias("start"),
        max(ident(col::TIMESTAMP)).alias("end"),
        count(lit(1i64)).alias("events"),
        pages.alias("pages"),
    ];
    let mut columns = Vec::new();
    if q.bucket.is_some() {
        columns.push("bucket".to_owned());
    }
    if let Some(b) = &q.breakdown {
        let key = match b {
            SessionBreakdown::EntryPage => first_value_udaf()
                .call(vec![ident("path")])
                .order_by(by_time())
                .filter(is_pageview())
                .build()?,
            SessionBreakdown::ExitPage => last_value_udaf()
                .call(vec![ident("path")])
                .order_by(by_time())
                .filter(is_pageview())
                .build()?,
            SessionBreakdown::Field(f) => first_value(field_expr(f, As::Text)?, by_time()),
        };
        per_session.push(key.alias("key"));
        columns.push(match b {
            SessionBreakdown::EntryPage => "$entry_page".to_owned(),
            SessionBreakdown::ExitPage => "$exit_page".to_owned(),
            SessionBreakdown::Field(f) => super::engine::field_name(f),
        });
    }
    let started_in_range = ident("start")
        .gt_eq(ts_lit(q.from))
        .and(ident("start").lt(ts_lit(q.to)));
    let us = |c: &str| cast(ident(c), DataType::Int64);
    let seconds = cast(us("end") - us("start"), DataType::Float64) / lit(1_000_000.0);
    let bounced = when(
        ident("pages")
            .eq(lit(1i64))
            .and(ident("events").eq(lit(1i64))),
        lit(1.0),
    )
    .otherwise(lit(0.0))?;
    let mut groups = Vec::new();
    if let Some(iv) = q.bucket {
        groups.push(bucket_expr(ident("start"), iv, q.timezone).alias("bucket"));
    }
    if q.breakdown.is_some() {
        groups.push(ident("key"));
    }
    let n_groups = groups.len();
    let df = widened(frame, &q.filters)?
        .aggregate(vec![ident(col::SESSION_ID)], per_session)?
        .filter(started_in_range)?
        .aggregate(
            groups,
            vec![
                count(lit(1i64)).alias("sessions"),
                avg(seconds.clone()).alias("avg_duration_seconds"),
                median(seconds).alias("median_duration_seconds"),
                avg(bounced).alias("bounce_rate"),
                avg(cast(ident("pages"), DataType::Float64)).alias("pages_per_session"),
            ],
        )?;
    let mut rows = json_rows(df).await?;
    order_and_limit(&mut rows, q.bucket.is_some(), n_groups, q.limit);
    columns.extend(
        [
            "sessions",
            "avg_duration_seconds",
            "median_duration_seconds",
            "bounce_rate",
            "pages_per_session",
        ]
        .map(String::from),
    );
    Ok(ResultTable { columns, rows })
}

/// The most common items before or after an anchor (see [`PathQuery`]).
pub(crate) async fn paths(frame: DataFrame, q: &PathQuery) -> Result<ResultTable> {
    let mut events = widened(frame, &q.filters)?;
    if q.pages {
        events = events.filter(is_pageview().and(ident("path").is_not_null()))?;
    }
    let mut anchor = lit(true);
    for f in &q.anchor {
        anchor = anchor.and(filter_expr(f)?);
    }
    let anchor = coalesce(vec![anchor, lit(false)])
        .and(ident(col::TIMESTAMP).gt_eq(ts_lit(q.from)))
        .and(ident(col::TIMESTAMP).lt(ts_lit(q.to)));
    let item = ident(if q.pages { "path" } else { col::EVENT });
    let mut seq = events.select(vec![
        ident(col::SESSION_ID),
        ident(col::PERSON_KEY),
        ident(col::TIMESTAMP),
        item.alias("item"),
        anchor.alias("is_anchor"),
    ])?;
    // Ties in time are ordered by item, so results do not depend on the scan order.
    let order = || {
        vec![
            ident(col::TIMESTAMP).sort(true, false),
            ident("item").sort(true, false),
        ]
    };
    let over = |e: Expr| {
        e.partition_by(vec![ident(col::SESSION_ID)])
            .order_by(order())
            .build()
    };
    if q.pages {
        // A reload, or a page view repeated in a row, is one step.
        seq = seq
            .window(vec![over(lag(ident("item"), Some(1), None))?.alias("prev")])?
            .filter(
                ident("prev")
                    .is_null()
                    .or(ident("prev").not_eq(ident("item"))),
            )?;
    }
    let shift = |k: usize| -> Result<Expr> {
        let k = k as i64;
        let e = match q.direction {
            PathDirection::Next => lead(ident("item"), Some(k), None),
            PathDirection::Previous => lag(ident("item"), Some(k), None),
        };
        Ok(over(e)?.alias(format!("s{k}")))
    };
    let shifted = (1..=q.steps).map(shift).collect::<Result<Vec<_>>>()?;
    let occurrences = seq
        .window(shifted)?
        .filter(ident("is_anchor"))?
        .cache()
        .await?;
    let total = occurrences.clone().count().await?;
    let edge = match q.direction {
        PathDirection::Next => PATH_END,
        PathDirection::Previous => PATH_START,
    };
    let mut out = Vec::new();
    for k in 1..=q.steps {
        let mut df = occurrences.clone();
        if k > 1 {
            df = df.filter(ident(format!("s{}", k - 1)).is_not_null())?;
        }
        let df = df.aggregate(
            vec![coalesce(vec![ident(format!("s{k}")), lit(edge)]).alias("item")],
            vec![
                count(lit(1i64)).alias("count"),
                count_distinct(ident(col::PERSON_KEY)).alias("persons"),
            ],
        )?;
        let mut step_rows = json_rows(df).await?;
        // Most common first, then by item.
        step_rows.sort_by(|a, b| {
            let n = |r: &[Value]| r[1].as_i64().unwrap_or(0);
            n(b).cmp(&n(a))
                .then_with(|| a[0].as_str().unwrap_or("").cmp(b[0].as_str().unwrap_or("")))
        });
        step_rows.truncate(q.limit);
        for r in step_rows {
            let n = r[1].as_f64().unwrap_or(0.0);
            let mut row = vec![Value::from(k)];
            row.extend(r);
            row.push(Value::from(n / total.max(1) as f64));
            out.push(row);
        }
    }
    Ok(ResultTable {
        columns: ["step", "item", "count", "persons", "share"]
            .map(String::from)
            .to_vec(),
        rows: out,
    })
}
