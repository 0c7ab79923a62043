//! Trends: one rule's series, with the options that need more than one store query: top-N plus
//! `$other`, cumulative series, rolling active users (DAU/WAU/MAU) and the previous period.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tally_core::time::{format_rfc3339, parse_rfc3339};
use tally_core::{Interval, TimeRange};
use tally_store::{AggregateQuery, FieldRef, Filter, FilterOp, Measure, ResultTable, Store};

use crate::aggregator::QueryError;
use crate::rule::{AggregationRule, Compare, OTHER_GROUP};

/// Runs `q` (compiled from `rule` over `range`) with the rule's options. Returns the table in the
/// store's column layout (bucket?, groups..., value[, previous, delta, delta_ratio]) and whether a
/// rollup answered the main series.
///
/// `main` is the main series' plain aggregation when the caller already has it (see
/// [`is_plain`]; with whether a rollup answered it).
pub(crate) async fn trend(
    store: &dyn Store,
    rule: &AggregationRule,
    q: &AggregateQuery,
    range: &TimeRange,
    use_rollups: bool,
    main: Option<(ResultTable, bool)>,
) -> Result<(ResultTable, bool), QueryError> {
    let (mut table, rolled) = series(store, rule, q, range, use_rollups, main).await?;
    if rule.compare == Some(Compare::PreviousPeriod) {
        let prev_range = previous_period(range);
        let mut pq = q.clone();
        pq.from = prev_range.from.timestamp_micros();
        pq.to = prev_range.to.timestamp_micros();
        let (prev, _) = series(store, rule, &pq, &prev_range, use_rollups, None).await?;
        join_previous(&mut table, &prev, rule.interval, range, &prev_range);
    }
    Ok((table, rolled))
}

/// The series itself (a series without groups has a row for every bucket), without comparison.
async fn series(
    store: &dyn Store,
    rule: &AggregationRule,
    q: &AggregateQuery,
    range: &TimeRange,
    use_rollups: bool,
    main: Option<(ResultTable, bool)>,
) -> Result<(ResultTable, bool), QueryError> {
    let (mut table, rolled) = raw_series(store, rule, q, range, use_rollups, main).await?;
    if let (Some(iv), true) = (rule.interval, q.group_by.is_empty()) {
        fill_buckets(&mut table, &iv.buckets(range), &q.measure, rule.cumulative);
    }
    Ok((table, rolled))
}

async fn raw_series(
    store: &dyn Store,
    rule: &AggregationRule,
    q: &AggregateQuery,
    range: &TimeRange,
    use_rollups: bool,
    main: Option<(ResultTable, bool)>,
) -> Result<(ResultTable, bool), QueryError> {
    if let Some(days) = rule.active_days() {
        return Ok((active_users(store, q, range, days).await?, false));
    }
    if rule.other {
        return Ok((top_and_other(store, q).await?, false));
    }
    if rule.cumulative && q.measure == Measure::UniquePersons {
        return Ok((cumulative_persons(store, q).await?, false));
    }
    let (mut table, rolled) = match main {
        Some(m) => m,
        None => plain_series(store, q, use_rollups).await?,
    };
    if rule.cumulative {
        running_totals(&mut table, q.group_by.len());
    }
    Ok((table, rolled))
}

/// Whether the main series of `rule` (compiled to `q`) is `q`'s plain aggregation, which the
/// caller may compute for several rules at once ([`Store::aggregate_many`]).
pub(crate) fn is_plain(rule: &AggregationRule, q: &AggregateQuery) -> bool {
    rule.active_days().is_none()
        && !rule.other
        && !(rule.cumulative && q.measure == Measure::UniquePersons)
}

/// `q`'s answer from a rollup, when `use_rollups` and one answers it.
pub(crate) fn from_rollup(
    store: &dyn Store,
    q: &AggregateQuery,
    use_rollups: bool,
) -> Option<ResultTable> {
    use_rollups
        .then(|| store.aggregate_from_rollup(q))
        .flatten()
}

/// `q`'s plain aggregation, from a rollup when one answers it (and `use_rollups`).
async fn plain_series(
    store: &dyn Store,
    q: &AggregateQuery,
    use_rollups: bool,
) -> Result<(ResultTable, bool), QueryError> {
    Ok(match from_rollup(store, q, use_rollups) {
        Some(t) => (t, true),
        None => (store.aggregate(q).await?, false),
    })
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Group values (text or null) as a sortable key.
type GroupKey = Vec<Option<String>>;

fn gkey(values: &[Value]) -> GroupKey {
    values
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn gvalues(key: &GroupKey) -> impl Iterator<Item = Value> + '_ {
    key.iter()
        .map(|g| g.as_ref().map_or(Value::Null, |s| Value::String(s.clone())))
}

fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        Value::from(x as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

/// Rows are (bucket, groups..., value). Replaces each value by the running total of its group,
/// and gives every group a row in every bucket after its first.
fn running_totals(table: &mut ResultTable, n_groups: usize) {
    let mut buckets: BTreeSet<String> = BTreeSet::new();
    let mut by_group: BTreeMap<GroupKey, BTreeMap<String, f64>> = BTreeMap::new();
    for row in &table.rows {
        let Some(Value::String(b)) = row.first() else {
            continue;
        };
        buckets.insert(b.clone());
        let key = gkey(&row[1..=n_groups]);
        *by_group
            .entry(key)
            .or_default()
            .entry(b.clone())
            .or_default() += num(&row[n_groups + 1]).unwrap_or(0.0);
    }
    table.rows = cumulate(&buckets, by_group);
}

fn cumulate(
    buckets: &BTreeSet<String>,
    by_group: BTreeMap<GroupKey, BTreeMap<String, f64>>,
) -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    for (group, values) in by_group {
        let mut total = 0.0;
        let mut started = false;
        for b in buckets {
            if let Some(v) = values.get(b) {
                total += v;
                started = true;
            }
            if started {
                let mut row = vec![Value::String(b.clone())];
                row.extend(gvalues(&group));
                row.push(number(total));
                rows.push(row);
            }
        }
    }
    rows.sort_by(|a, b| {
        let key = |r: &Vec<Value>| r[0].as_str().map(str::to_owned);
        key(a).cmp(&key(b))
    });
    rows
}

/// A person counts in the bucket where they were first seen in the range, and in every later
/// bucket's total.
async fn cumulative_persons(
    store: &dyn Store,
    q: &AggregateQuery,
) -> Result<ResultTable, QueryError> {
    let mut pq = q.clone();
    pq.group_by.push(FieldRef::Column("person_id".into()));
    pq.measure = Measure::Count;
    pq.limit = None;
    let t = store.aggregate(&pq).await?;
    let n = q.group_by.len();
    let mut buckets = BTreeSet::new();
    let mut first: HashMap<(GroupKey, String), String> = HashMap::new();
    for row in &t.rows {
        let Some(Value::String(b)) = row.first() else {
            continue;
        };
        buckets.insert(b.clone());
        let key = (gkey(&row[1..=n]), row[n + 1].to_string());
        first
            .entry(key)
            .and_modify(|f| {
                if b < f {
                    f.clone_from(b);
                }
            })
            .or_insert_with(|| b.clone());
    }
    let mut by_group: BTreeMap<GroupKey, BTreeMap<String, f64>> = BTreeMap::new();
    for ((group, _), b) in first {
        *by_group.entry(group).or_default().entry(b).or_default() += 1.0;
    }
    Ok(ResultTable {
        columns: t.columns[..t.columns.len() - 2]
            .iter()
            .cloned()
            .chain(["value".to_owned()])
            .collect(),
        rows: cumulate(&buckets, by_group),
    })
}

/// DAU/WAU/MAU: for each day (or, without an interval, the range's last day), the distinct
/// persons active on that day or the `days - 1` days before it, per group.
async fn active_users(
    store: &dyn Store,
    q: &AggregateQuery,
    range: &TimeRange,
    days: u32,
) -> Result<ResultTable, QueryError> {
    let tz = range.timezone;
    // Local days from `days - 1` before the range's first day to its last.
    let mut start = Interval::Day.truncate(range.from, tz);
    for _ in 1..days {
        start = Interval::Day.truncate(start - chrono::Duration::microseconds(1), tz);
    }
    let all_days = Interval::Day.buckets(&TimeRange {
        from: start,
        to: range.to,
        timezone: tz,
    });
    let index: HashMap<String, usize> = all_days
        .iter()
        .enumerate()
        .map(|(i, d)| (format_rfc3339(*d), i))
        .collect();
    let mut pq = q.clone();
    pq.from = start.timestamp_micros();
    pq.bucket = Some(Interval::Day);
    pq.group_by.push(FieldRef::Column("person_id".into()));
    pq.measure = Measure::Count;
    pq.limit = None;
    let t = store.aggregate(&pq).await?;
    let n = q.group_by.len();
    // (group, person) -> active day indexes
    let mut active: HashMap<(GroupKey, String), Vec<usize>> = HashMap::new();
    for row in &t.rows {
        let Some(i) = row
            .first()
            .and_then(Value::as_str)
            .and_then(|b| index.get(b))
        else {
            continue;
        };
        active
            .entry((gkey(&row[1..=n]), row[n + 1].to_string()))
            .or_default()
            .push(*i);
    }
    // Output days: those of the range (or only its last).
    let first_out = all_days
        .len()
        .saturating_sub(Interval::Day.buckets(range).len());
    let outputs: Vec<usize> = if q.bucket.is_some() {
        (first_out..all_days.len()).collect()
    } else {
        all_days.len().checked_sub(1).into_iter().collect()
    };
    let span = days as usize;
    let mut counts: BTreeMap<GroupKey, Vec<u64>> = BTreeMap::new();
    for ((group, _), mut idx) in active {
        idx.sort_unstable();
        idx.dedup();
        let c = counts
            .entry(group)
            .or_insert_with(|| vec![0; outputs.len()]);
        for (o, &day) in outputs.iter().enumerate() {
            // Active within [day - span + 1, day]?
            let lo = (day + 1).saturating_sub(span);
            let k = idx.partition_point(|d| *d < lo);
            if idx.get(k).is_some_and(|d| *d <= day) {
                c[o] += 1;
            }
        }
    }
    let mut rows = Vec::new();
    for (group, c) in counts {
        for (o, &day) in outputs.iter().enumerate() {
            if c[o] == 0 {
                continue;
            }
            let mut row = Vec::with_capacity(n + 2);
            if q.bucket.is_some() {
                row.push(Value::String(format_rfc3339(all_days[day])));
            }
            row.extend(gvalues(&group));
            row.push(Value::from(c[o]));
            rows.push(row);
        }
    }
    let has_bucket = q.bucket.is_some();
    rows.sort_by(|a, b| {
        let bucket = |r: &Vec<Value>| {
            if has_bucket {
                r[0].as_str().map(str::to_owned)
            } else {
                None
            }
        };
        let v = |r: &Vec<Value>| r.last().and_then(Value::as_f64).unwrap_or(0.0);
        bucket(a).cmp(&bucket(b)).then(v(b).total_cmp(&v(a)))
    });
    let mut columns: Vec<String> = t.columns[..t.columns.len() - 2].to_vec();
    if !has_bucket {
        columns.remove(0);
    }
    columns.push("value".into());
    Ok(ResultTable { columns, rows })
}

/// The `limit` largest groups over the whole range, then per bucket those groups and `$other`.
async fn top_and_other(store: &dyn Store, q: &AggregateQuery) -> Result<ResultTable, QueryError> {
    let limit = q.limit.unwrap_or(10);
    let n = q.group_by.len();
    let offset = usize::from(q.bucket.is_some());
    let mut top_q = q.clone();
    top_q.bucket = None;
    top_q.limit = Some(limit);
    let top: Vec<Vec<Value>> = store
        .aggregate(&top_q)
        .await?
        .rows
        .into_iter()
        .map(|r| r[..n].to_vec())
        .collect();
    let mut all_q = q.clone();
    all_q.limit = None;
    let all = store.aggregate(&all_q).await?;
    let is_top = |r: &Vec<Value>| top.contains(&r[offset..offset + n].to_vec());
    let mut rows: Vec<Vec<Value>> = all.rows.iter().filter(|r| is_top(r)).cloned().collect();
    let other_row = |bucket: Option<&Value>, v: Value| {
        let mut row: Vec<Value> = bucket.into_iter().cloned().collect();
        row.extend(std::iter::repeat_n(Value::from(OTHER_GROUP), n));
        row.push(v);
        row
    };
    match &q.measure {
        Measure::Count | Measure::Sum(_) => {
            // Additive: the rest of each bucket is the sum of the groups not kept.
            let mut rest: BTreeMap<Option<String>, (f64, bool)> = BTreeMap::new();
            for r in all.rows.iter().filter(|r| !is_top(r)) {
                let b = if offset == 1 {
                    r[0].as_str().map(str::to_owned)
                } else {
                    None
                };
                let e = rest.entry(b).or_insert((0.0, false));
                if let Some(v) = num(&r[offset + n]) {
                    e.0 += v;
                    e.1 = true;
                }
            }
            for (b, (v, any)) in rest {
                let value = if any { number(v) } else { Value::Null };
                rows.push(other_row(b.map(Value::String).as_ref(), value));
            }
        }
        _ => {
            // One group field (checked when compiling): the events whose value is not kept.
            let mut oq = q.clone();
            oq.group_by.clear();
            oq.limit = None;
            oq.filters.push(Filter {
                field: q.group_by[0].clone(),
                op: FilterOp::NotIn(top.iter().map(|g| g[0].clone()).collect()),
            });
            for r in store.aggregate(&oq).await?.rows {
                let (b, v) = if offset == 1 {
                    (Some(r[0].clone()), r[1].clone())
                } else {
                    (None, r[0].clone())
                };
                rows.push(other_row(b.as_ref(), v));
            }
        }
    }
    // Buckets in order; within one, the kept groups by value, `$other` last.
    rows.sort_by(|a, b| {
        let bucket = |r: &Vec<Value>| {
            if offset == 1 {
                r[0].as_str().map(str::to_owned)
            } else {
                None
            }
        };
        let is_other = |r: &Vec<Value>| r[offset] == OTHER_GROUP;
        let v = |r: &Vec<Value>| r[offset + n].as_f64().unwrap_or(f64::MIN);
        bucket(a)
            .cmp(&bucket(b))
            .then(is_other(a).cmp(&is_other(b)))
            .then(v(b).total_cmp(&v(a)))
    });
    Ok(ResultTable {
        columns: all.columns,
        rows,
    })
}

/// The period just before `range`: as many months when the range is whole months, as many
/// local days when it is whole days, otherwise the same duration.
pub(crate) fn previous_period(range: &TimeRange) -> TimeRange {
    let tz = range.timezone;
    let aligned = |iv: Interval, t: DateTime<Utc>| iv.truncate(t, tz) == t;
    let step_back = |iv: Interval, mut t: DateTime<Utc>, n: usize| {
        for _ in 0..n {
            t = iv.truncate(t - chrono::Duration::microseconds(1), tz);
        }
        t
    };
    for iv in [Interval::Month, Interval::Day] {
        if aligned(iv, range.from) && aligned(iv, range.to) {
            let n = iv.buckets(range).len();
            return TimeRange {
                from: step_back(iv, range.from, n),
                to: range.from,
                timezone: tz,
            };
        }
    }
    TimeRange {
        from: range.from - (range.to - range.from),
        to: range.from,
        timezone: tz,
    }
}

/// Adds `previous`, `delta` and `delta_ratio` to each row, matching the previous period's row of
/// the same groups and the same bucket position.
fn join_previous(
    table: &mut ResultTable,
    prev: &ResultTable,
    interval: Option<Interval>,
    range: &TimeRange,
    prev_range: &TimeRange,
) {
    let has_bucket = interval.is_some();
    let position = |buckets: &[DateTime<Utc>], b: &Value| -> Option<usize> {
        let t = b.as_str().and_then(parse_rfc3339)?;
        buckets.iter().position(|x| *x == t)
    };
    let (cur_b, prev_b) = match interval {
        Some(iv) => (iv.buckets(range), iv.buckets(prev_range)),
        None => (Vec::new(), Vec::new()),
    };
    let key = |row: &[Value], buckets: &[DateTime<Utc>]| -> Option<(Option<usize>, GroupKey)> {
        let last = row.len() - 1;
        if has_bucket {
            Some((Some(position(buckets, &row[0])?), gkey(&row[1..last])))
        } else {
            Some((None, gkey(&row[..last])))
        }
    };
    let previous: HashMap<(Option<usize>, GroupKey), Value> = prev
        .rows
        .iter()
        .filter_map(|r| Some((key(r, &prev_b)?, r.last()?.clone())))
        .collect();
    for row in &mut table.rows {
        let p = key(row, &cur_b)
            .and_then(|k| previous.get(&k).cloned())
            .unwrap_or(Value::Null);
        let v = row.last().and_then(Value::as_f64);
        let pv = p.as_f64();
        let delta = match (v, pv) {
            (Some(v), Some(p)) => number(v - p),
            _ => Value::Null,
        };
        let ratio = match (v, pv) {
            (Some(v), Some(p)) if p != 0.0 => {
                serde_json::Number::from_f64((v - p) / p).map_or(Value::Null, Value::Number)
            }
            _ => Value::Null,
        };
        row.extend([p, delta, ratio]);
    }
    table
        .columns
        .extend(["previous", "delta", "delta_ratio"].map(String::from));
}

/// A time series without groups gets a row for every bucket of the range: 0 for counts, null
/// for measures of nothing (a cumulative series carries its total forward).
fn fill_buckets(table: &mut ResultTable, buckets: &[DateTime<Utc>], m: &Measure, cumulative: bool) {
    let empty = match m {
        Measure::Count | Measure::UniquePersons => Value::from(0),
        _ => Value::Null,
    };
    let mut by_bucket: BTreeMap<String, Value> = table
        .rows
        .drain(..)
        .filter_map(|r| match (r.first(), r.get(1)) {
            (Some(Value::String(b)), Some(v)) => Some((b.clone(), v.clone())),
            _ => None,
        })
        .collect();
    let mut carried = empty.clone();
    table.rows = buckets
        .iter()
        .map(|b| {
            let key = format_rfc3339(*b);
            let v = match by_bucket.remove(&key) {
                Some(v) => {
                    carried = v.clone();
                    v
                }
                None if cumulative => carried.clone(),
                None => empty.clone(),
            };
            vec![Value::String(key), v]
        })
        .collect();
}
