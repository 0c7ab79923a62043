//! Reading a query's result table as what a chart draws: series over time, categories, funnel
//! steps, retention cohorts or one number.
//!
//! The tables are the ones `POST /v1/query` answers; their shape tells what they hold (a
//! `bucket` column, group columns, a `value` column, the funnel's `step` columns, the retention
//! `cohort` columns).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tally_core::time::parse_rfc3339;
use tally_store::ResultTable;

use crate::ChartError;

/// Columns of comparison results, not values to plot.
const COMPARE_COLUMNS: [&str; 3] = ["previous", "delta", "delta_ratio"];
/// At most this many series or slices; the rest are summed into "Other".
pub(crate) const MAX_SERIES: usize = 8;
pub(crate) const OTHER: &str = "Other";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimeSeries {
    pub x: Vec<DateTime<Utc>>,
    pub series: Vec<(String, Vec<f64>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FunnelStep {
    pub label: String,
    pub persons: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cohort {
    pub start: DateTime<Utc>,
    pub size: f64,
    /// Per period: persons and their share of the cohort.
    pub periods: Vec<Option<(f64, f64)>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Single {
    pub value: f64,
    pub previous: Option<f64>,
}

fn index(t: &ResultTable, name: &str) -> Option<usize> {
    t.columns.iter().position(|c| c == name)
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(none)".to_owned(),
        other => other.to_string(),
    }
}

/// The columns that name a group: everything that is not the bucket, a value or a comparison.
fn key_columns(t: &ResultTable, values: &[usize]) -> Vec<usize> {
    (0..t.columns.len())
        .filter(|i| {
            let c = t.columns[*i].as_str();
            c != "bucket" && !values.contains(i) && !COMPARE_COLUMNS.contains(&c)
        })
        .collect()
}

/// The value columns: `value` if there is one, else every numeric column but the bucket
/// (lifecycle's `new`, `returning`, ...).
fn value_columns(t: &ResultTable) -> Vec<usize> {
    if let Some(v) = index(t, "value") {
        return vec![v];
    }
    (0..t.columns.len())
        .filter(|&i| {
            t.columns[i] != "bucket"
                && !COMPARE_COLUMNS.contains(&t.columns[i].as_str())
                && t.rows.iter().any(|r| number(&r[i]).is_some())
                && t.rows
                    .iter()
                    .all(|r| r[i].is_null() || number(&r[i]).is_some())
        })
        .collect()
}

fn group_key(row: &[Value], keys: &[usize]) -> String {
    keys.iter()
        .map(|&k| text(&row[k]))
        .collect::<Vec<_>>()
        .join(" / ")
}

pub(crate) fn time_series(t: &ResultTable) -> Result<TimeSeries, ChartError> {
    let b = index(t, "bucket").ok_or_else(|| {
        ChartError::Shape(
            "this chart draws a series over time: give the query an `interval`".into(),
        )
    })?;
    let values = value_columns(t);
    if values.is_empty() {
        return Err(ChartError::Shape(
            "the result has no numeric column to draw".into(),
        ));
    }
    let keys = key_columns(t, &values);
    let mut x: Vec<DateTime<Utc>> = Vec::new();
    let mut at: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for row in &t.rows {
        let s = row[b].as_str().and_then(parse_rfc3339).ok_or_else(|| {
            ChartError::Shape("the `bucket` column holds something other than timestamps".into())
        })?;
        at.entry(s).or_insert(0);
    }
    for (i, (k, slot)) in at.iter_mut().enumerate() {
        *slot = i;
        x.push(*k);
    }
    let name_of = |row: &[Value], v: usize| {
        if values.len() > 1 || keys.is_empty() {
            t.columns[v].clone()
        } else {
            group_key(row, &keys)
        }
    };
    // Totals first, from the sparse rows: only the series drawn get a dense vector, however
    // many groups the result has.
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for row in &t.rows {
        for &v in &values {
            let name = name_of(row, v);
            let e = totals.entry(name.clone()).or_insert_with(|| {
                order.push(name);
                0.0
            });
            *e += number(&row[v]).unwrap_or(0.0);
        }
    }
    let kept: Vec<String> = if order.len() <= MAX_SERIES {
        order
    } else {
        let mut by_total = order.clone();
        by_total.sort_by(|a, b| totals[b].total_cmp(&totals[a]).then(a.cmp(b)));
        // The largest first, then "Other".
        by_total.truncate(MAX_SERIES - 1);
        by_total
    };
    let folded = kept.len() < totals.len();
    let index: BTreeMap<&str, usize> = kept
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut series: Vec<(String, Vec<f64>)> = kept
        .iter()
        .map(|n| (n.clone(), vec![0.0; x.len()]))
        .collect();
    if folded {
        series.push((OTHER.to_owned(), vec![0.0; x.len()]));
    }
    for row in &t.rows {
        let Some(s) = row[b].as_str().and_then(parse_rfc3339) else {
            continue;
        };
        let i = at[&s];
        for &v in &values {
            let k = index
                .get(name_of(row, v).as_str())
                .copied()
                .unwrap_or(kept.len());
            series[k].1[i] += number(&row[v]).unwrap_or(0.0);
        }
    }
    Ok(TimeSeries { x, series })
}

/// Named values, largest first: each group's value summed over the buckets (a result without
/// `value`, such as stickiness, is keyed by its first column).
pub(crate) fn categories(t: &ResultTable, limit: usize) -> Result<Vec<(String, f64)>, ChartError> {
    let values = value_columns(t);
    let Some(&v) = values.first() else {
        return Err(ChartError::Shape(
            "the result has no numeric column to draw".into(),
        ));
    };
    let mut keys = key_columns(t, &[v]);
    if index(t, "value").is_none() {
        // Stickiness: periods → persons.
        keys = vec![0];
    }
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut order = Vec::new();
    for row in &t.rows {
        let k = if keys.is_empty() {
            t.columns[v].clone()
        } else {
            group_key(row, &keys)
        };
        let e = sums.entry(k.clone()).or_insert_with(|| {
            order.push(k);
            0.0
        });
        *e += number(&row[v]).unwrap_or(0.0);
    }
    let mut items: Vec<(String, f64)> = order
        .into_iter()
        .map(|k| {
            let v = sums[&k];
            (k, v)
        })
        .collect();
    items.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if items.len() > limit {
        let rest: f64 = items.split_off(limit - 1).iter().map(|(_, v)| v).sum();
        items.push((OTHER.to_owned(), rest));
    }
    Ok(items)
}

/// The steps of a funnel result, summed over its breakdown values.
pub(crate) fn funnel(t: &ResultTable) -> Result<Vec<FunnelStep>, ChartError> {
    let (Some(s), Some(e), Some(p)) = (index(t, "step"), index(t, "event"), index(t, "persons"))
    else {
        return Err(ChartError::Shape(
            "a funnel chart draws a funnel query's result".into(),
        ));
    };
    let mut steps: BTreeMap<i64, FunnelStep> = BTreeMap::new();
    for row in &t.rows {
        let n = row[s].as_i64().unwrap_or(0);
        let step = steps.entry(n).or_insert_with(|| FunnelStep {
            label: text(&row[e]),
            persons: 0.0,
        });
        step.persons += number(&row[p]).unwrap_or(0.0);
    }
    Ok(steps.into_values().collect())
}

pub(crate) fn retention(t: &ResultTable) -> Result<Vec<Cohort>, ChartError> {
    let cols = ["cohort", "size", "period", "persons", "fraction"].map(|c| index(t, c));
    let [Some(c), Some(sz), Some(pe), Some(ps), Some(fr)] = cols else {
        return Err(ChartError::Shape(
            "a retention chart draws a retention query's result".into(),
        ));
    };
    let mut cohorts: BTreeMap<DateTime<Utc>, Cohort> = BTreeMap::new();
    for row in &t.rows {
        let Some(start) = row[c].as_str().and_then(parse_rfc3339) else {
            continue;
        };
        let cohort = cohorts.entry(start).or_insert_with(|| Cohort {
            start,
            size: number(&row[sz]).unwrap_or(0.0),
            periods: Vec::new(),
        });
        let period = row[pe].as_u64().unwrap_or(0) as usize;
        if cohort.periods.len() <= period {
            cohort.periods.resize(period + 1, None);
        }
        cohort.periods[period] = Some((
            number(&row[ps]).unwrap_or(0.0),
            number(&row[fr]).unwrap_or(0.0),
        ));
    }
    Ok(cohorts.into_values().collect())
}

/// One number: the `value` (summed over buckets and groups) and its `previous` if compared.
pub(crate) fn single(t: &ResultTable) -> Result<Option<Single>, ChartError> {
    let values = value_columns(t);
    let Some(&v) = values.first() else {
        return Err(ChartError::Shape(
            "the result has no numeric column to show".into(),
        ));
    };
    if t.rows.is_empty() {
        return Ok(None);
    }
    let value = t.rows.iter().filter_map(|r| number(&r[v])).sum();
    let previous = index(t, "previous").map(|p| t.rows.iter().filter_map(|r| number(&r[p])).sum());
    Ok(Some(Single { value, previous }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(v: Value) -> ResultTable {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn series_by_group_and_by_column() {
        let t = table(json!({"columns": ["bucket", "browser", "value"], "rows": [
            ["2026-09-01T00:00:00Z", "Chrome", 3], ["2026-09-01T00:00:00Z", "Firefox", 1],
            ["2026-09-02T00:00:00Z", "Chrome", 5]]}));
        let s = time_series(&t).unwrap();
        assert_eq!(s.x.len(), 2);
        assert_eq!(
            s.series,
            vec![
                ("Chrome".into(), vec![3.0, 5.0]),
                ("Firefox".into(), vec![1.0, 0.0])
            ]
        );
        let t = table(json!({"columns": ["bucket", "new", "returning"], "rows": [
            ["2026-09-01T00:00:00Z", 2, 0], ["2026-09-08T00:00:00Z", 1, 2]]}));
        let s = time_series(&t).unwrap();
        assert_eq!(s.series[1], ("returning".into(), vec![0.0, 2.0]));
        let no_bucket = table(json!({"columns": ["value"], "rows": [[4]]}));
        assert!(matches!(time_series(&no_bucket), Err(ChartError::Shape(_))));
    }

    #[test]
    fn many_series_fold_into_other() {
        let rows: Vec<Value> = (0..12)
            .map(|i| json!(["2026-09-01T00:00:00Z", format!("g{i:02}"), i + 1]))
            .collect();
        let t = table(json!({"columns": ["bucket", "g", "value"], "rows": rows}));
        let s = time_series(&t).unwrap();
        assert_eq!(s.series.len(), MAX_SERIES);
        assert_eq!(s.series[0].0, "g11");
        let other = s.series.last().unwrap();
        assert_eq!(other.0, OTHER);
        assert_eq!(other.1, vec![(1..=5).sum::<i32>() as f64]);
    }

    #[test]
    fn categories_funnels_cohorts_and_numbers() {
        let t = table(
            json!({"columns": ["path", "value", "previous", "delta", "delta_ratio"],
            "rows": [["/a", 2, 3, -1, -0.33], ["/c", 5, 1, 4, 4.0]]}),
        );
        assert_eq!(
            categories(&t, 10).unwrap(),
            vec![("/c".into(), 5.0), ("/a".into(), 2.0)]
        );
        assert_eq!(
            single(&t).unwrap(),
            Some(Single {
                value: 7.0,
                previous: Some(4.0)
            })
        );
        let f = table(
            json!({"columns": ["country", "step", "event", "persons"], "rows": [
            ["DE", 1, "signup", 2], ["DE", 2, "login", 1], ["US", 1, "signup", 2], ["US", 2, "login", 0]]}),
        );
        let steps = funnel(&f).unwrap();
        assert_eq!(steps[0].persons, 4.0);
        assert_eq!(steps[1].label, "login");
        let r = table(
            json!({"columns": ["cohort", "size", "period", "persons", "fraction"], "rows": [
            ["2026-09-07T00:00:00Z", 2, 0, 1, 0.5], ["2026-09-07T00:00:00Z", 2, 1, 2, 1.0]]}),
        );
        let c = retention(&r).unwrap();
        assert_eq!(c[0].periods, vec![Some((1.0, 0.5)), Some((2.0, 1.0))]);
        let empty = table(json!({"columns": ["value"], "rows": []}));
        assert_eq!(single(&empty).unwrap(), None);
    }
}
