//! Event counts from the catalog: a query that counts all events (no filter, no group) per day,
//! week or month, or over the whole range, needs no scan of a file whose rows lie wholly inside
//! the range and inside one bucket: the catalog knows its row count. Files are one UTC day each,
//! so in UTC every file is counted this way and only the buffer and the range's edge files are
//! read; in other zones the files that straddle a local midnight are read. ClickHouse answers
//! `count()` from part metadata the same way.

use std::collections::BTreeMap;

use chrono::{DateTime, LocalResult, TimeZone};
use chrono_tz::Tz;
use serde_json::Value;
use tally_core::Interval;
use tally_core::time::format_rfc3339;

use super::engine::{Sources, order_and_limit};
use crate::plan::{AggregateQuery, Measure, ResultTable};

/// Rows per bucket start (microseconds; `None` without buckets).
pub(crate) type Counts = BTreeMap<Option<i64>, u64>;

/// When every query of `qs` (which share filters, buckets and groups) counts all events, takes
/// out of `sources.inside` the files that lie in one bucket and returns their rows per bucket.
pub(crate) fn take_counted_files(qs: &[AggregateQuery], sources: &mut Sources) -> Counts {
    let mut counts = Counts::new();
    let Some(q) = qs.first() else {
        return counts;
    };
    let countable = q.filters.is_empty()
        && q.group_by.is_empty()
        && qs.iter().all(|q| matches!(q.measure, Measure::Count))
        && matches!(
            q.bucket,
            None | Some(Interval::Day | Interval::Week | Interval::Month)
        );
    if !countable {
        return counts;
    }
    let tz = q.timezone;
    sources.inside.retain(|f| {
        let bucket = match q.bucket {
            None => Some(None),
            Some(iv) => match (bucket_of(iv, tz, f.min_ts), bucket_of(iv, tz, f.max_ts)) {
                (Some(a), Some(b)) if a == b => Some(Some(a)),
                _ => None,
            },
        };
        match bucket {
            Some(b) => {
                *counts.entry(b).or_default() += f.rows;
                false
            }
            None => true,
        }
    });
    tracing::debug!(
        counted = counts.len(),
        scanned = sources.inside.len(),
        "buckets counted from the catalog, inside files left to scan"
    );
    counts
}

/// The start of the bucket of `ts` as the scan computes it, or `None` where the bucket's local
/// midnight does not exist or exists twice (a DST change at midnight), which the scan handles.
fn bucket_of(iv: Interval, tz: Tz, ts: i64) -> Option<i64> {
    let start = iv.truncate(DateTime::from_timestamp_micros(ts)?, tz);
    let local = start.with_timezone(&tz).naive_local();
    match tz.from_local_datetime(&local) {
        LocalResult::Single(_) if local.and_utc().timestamp() % 86_400 == 0 => {
            Some(start.timestamp_micros())
        }
        _ => None,
    }
}

/// Adds `counts` to the answers of `qs` (all counts, see [`take_counted_files`]): to the row of
/// the same bucket, or as a new row; then orders the rows again.
pub(crate) fn add_counts(tables: &mut [ResultTable], qs: &[AggregateQuery], counts: &Counts) {
    if counts.is_empty() {
        return;
    }
    for (table, q) in tables.iter_mut().zip(qs) {
        let has_bucket = q.bucket.is_some();
        for (bucket, &n) in counts {
            let label = bucket
                .and_then(DateTime::from_timestamp_micros)
                .map(|t| Value::String(format_rfc3339(t)));
            let row = table
                .rows
                .iter_mut()
                .find(|r| !has_bucket || r.first() == label.as_ref());
            match row {
                Some(r) => {
                    if let Some(v) = r.last_mut() {
                        *v = (v.as_u64().unwrap_or(0) + n).into();
                    }
                }
                None => table.rows.push(match label {
                    Some(l) if has_bucket => vec![l, n.into()],
                    _ => vec![n.into()],
                }),
            }
        }
        order_and_limit(
            &mut table.rows,
            has_bucket,
            usize::from(has_bucket),
            q.limit,
        );
    }
}
