//! The overview: a project's pulse on one page. Events and persons now (the last
//! [`NOW_MINUTES`] minutes), today and this week; the selected range with the period before it,
//! as a series; and the top events, pages, referrers, countries and browsers.
//!
//! Every figure is an ordinary trend rule run by the `Aggregator` (all at once), so each number
//! is what `POST /v1/query` answers for the same rule and range; [`Overview::queries`] lists
//! them.
//!
//! Speed: the server keeps a rollup of each of the overview's rules ([`Overview::rollups`]) for
//! every project, and ranges that end now are counted through the end of the current UTC hour
//! (events are not timestamped in the future, so the numbers are the same), so that everything
//! but "now" is answered by merging hourly cells, whatever the number of events.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{Value, json};
use tally_core::time::{RelativeRange, ResolvedRange, range_spec};
use tally_core::{ProjectId, TimeRange};
use tally_store::{ResultTable, RollupDef};

use crate::{AggregationRule, Aggregator, QueryError, QueryItem, QueryRequest};

/// "Now" is this many minutes back.
pub const NOW_MINUTES: i64 = 5;
/// Rows in each top list.
pub const TOP_N: usize = 8;

/// The breakdowns of the top lists: (name, field, only page views).
const TOPS: [(&str, &str, bool); 5] = [
    ("events", "event", false),
    ("pages", "path", true),
    ("referrers", "referrer_host", false),
    ("countries", "context.country", false),
    ("browsers", "browser", false),
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub generated_at: String,
    pub now: Totals,
    pub today: Totals,
    pub week: Totals,
    /// The selected range, with the same span just before it.
    pub range: RangeTotals,
    pub series: Series,
    /// `events`, `pages`, `referrers`, `countries`, `browsers`: the [`TOP_N`] values with the
    /// most events in the range.
    pub top: std::collections::BTreeMap<String, Vec<TopRow>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub events: u64,
    pub persons: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeTotals {
    #[serde(flatten)]
    pub range: ResolvedRange,
    pub events: u64,
    pub persons: u64,
    pub previous_events: u64,
    pub previous_persons: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// `hour` for ranges of up to two days, else `day`.
    pub interval: &'static str,
    /// `[bucket, events, persons]`.
    pub rows: Vec<(Value, u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopRow {
    pub value: Value,
    pub events: u64,
    /// The value's share of the list's events in the range (all of them, not only the top
    /// rows'), from 0 to 1.
    pub share: f64,
}

/// The ids of the overview's rollups start with this (saved rule names may not).
pub const ROLLUP_PREFIX: &str = "$overview.";

fn rule(name: &str, v: Value) -> QueryItem {
    let mut v = v;
    v["name"] = Value::String(name.to_owned());
    serde_json::from_value(v).unwrap_or_else(|e| panic!("overview rule {name}: {e}"))
}

/// The rule of top list `name` over `field` (page views only with `pages`); `total` counts all
/// the list's events instead of grouping them.
fn top(name: &str, field: &str, pages: bool, total: bool) -> QueryItem {
    let mut filters = vec![json!([field, "exists"])];
    if pages {
        filters.push(json!(["event", "eq", "pageview"]));
    }
    if total {
        rule(
            name,
            json!({"measure": {"op": "count"}, "filters": filters}),
        )
    } else {
        rule(
            name,
            json!({"measure": {"op": "count"}, "group_by": [field], "limit": TOP_N,
                   "filters": filters}),
        )
    }
}

/// `at` rounded up to a whole UTC hour.
fn end_of_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    const HOUR_US: i64 = 3_600_000_000;
    let us = at.timestamp_micros();
    DateTime::from_timestamp_micros(us + (HOUR_US - us.rem_euclid(HOUR_US)) % HOUR_US).unwrap_or(at)
}

/// `range` resolved at `at`; when it ends now and starts on a whole UTC hour, it ends at the
/// end of the current hour instead, so that rollups can answer it.
fn resolve(range: RelativeRange, at: DateTime<Utc>, tz: Tz) -> TimeRange {
    let mut r = range.resolve(at, tz);
    if r.to >= at && r.from.timestamp_micros() % 3_600_000_000 == 0 {
        r.to = end_of_hour(at).max(r.to);
    }
    r
}

fn count(name: &str) -> QueryItem {
    rule(name, json!({"measure": {"op": "count"}}))
}

fn persons(name: &str) -> QueryItem {
    rule(name, json!({"measure": {"op": "unique_users"}}))
}

fn as_u64(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

fn column(t: &ResultTable, name: &str) -> Option<usize> {
    t.columns.iter().position(|c| c == name)
}

/// The first row's `column`.
fn single(t: Option<&ResultTable>, name: &str) -> u64 {
    t.and_then(|t| t.rows.first()?.get(column(t, name)?)?.as_u64())
        .unwrap_or(0)
}

/// The queries behind the overview: one request per time range (`now`, `today`, `week`,
/// `range`).
#[derive(Debug, Clone)]
pub struct OverviewPlan {
    pub requests: Vec<(&'static str, QueryRequest)>,
    pub range: ResolvedRange,
    interval: &'static str,
}

impl Overview {
    /// The rollups that answer the overview of `project` (all but "now"), with their ids.
    pub fn rollups(project: &ProjectId) -> Vec<(String, RollupDef)> {
        let mut rules = vec![count("events"), persons("persons")];
        for (name, field, pages) in TOPS {
            rules.push(top(&format!("top_{name}"), field, pages, false));
            rules.push(top(&format!("top_{name}_total"), field, pages, true));
        }
        rules
            .into_iter()
            .filter_map(|item| match item {
                QueryItem::Rule(r) => Some(r),
                _ => None,
            })
            .filter_map(|r: AggregationRule| {
                let def = r.rollup_def(project).ok()?;
                Some((format!("{ROLLUP_PREFIX}{}", r.name), def))
            })
            .collect()
    }

    /// What the overview runs at `at` for `range` in `tz`.
    pub fn queries(range: RelativeRange, tz: Tz, at: DateTime<Utc>) -> OverviewPlan {
        let selected = resolve(range, at, tz);
        let interval = if selected.to - selected.from <= Duration::days(2) {
            "hour"
        } else {
            "day"
        };
        let mut items = vec![
            rule(
                "events",
                json!({"measure": {"op": "count"}, "compare": "previous_period"}),
            ),
            rule(
                "persons",
                json!({"measure": {"op": "unique_users"}, "compare": "previous_period"}),
            ),
            rule(
                "series_events",
                json!({"measure": {"op": "count"}, "interval": interval}),
            ),
            rule(
                "series_persons",
                json!({"measure": {"op": "unique_users"}, "interval": interval}),
            ),
        ];
        for (name, field, pages) in TOPS {
            items.push(top(&format!("top_{name}"), field, pages, false));
            items.push(top(&format!("top_{name}_total"), field, pages, true));
        }
        let fixed = |r: TimeRange| QueryRequest {
            time_range: range_spec(&r),
            rules: vec![count("events"), persons("persons")],
            exact: false,
        };
        let now = TimeRange {
            from: at - Duration::minutes(NOW_MINUTES),
            to: at,
            timezone: tz,
        };
        OverviewPlan {
            requests: vec![
                ("now", fixed(now)),
                ("today", fixed(resolve(RelativeRange::Today, at, tz))),
                ("week", fixed(resolve(RelativeRange::WeekToDate, at, tz))),
                (
                    "range",
                    QueryRequest {
                        time_range: range_spec(&selected),
                        rules: items,
                        exact: false,
                    },
                ),
            ],
            range: ResolvedRange::new(range, &selected),
            interval,
        }
    }

    /// Computes the overview of `project` at `at`.
    pub async fn compute(
        aggregator: &Aggregator,
        project: &ProjectId,
        range: RelativeRange,
        tz: Tz,
        at: DateTime<Utc>,
    ) -> Result<Self, QueryError> {
        let plan = Self::queries(range, tz, at);
        let mut answers = futures::future::try_join_all(
            plan.requests
                .iter()
                .map(|(_, request)| aggregator.run(project, request)),
        )
        .await?
        .into_iter()
        .map(|r| r.results);
        let mut totals = || {
            let r = answers.next().unwrap_or_default();
            Totals {
                events: single(r.get("events"), "value"),
                persons: single(r.get("persons"), "value"),
            }
        };
        let (now, today, week) = (totals(), totals(), totals());
        let r = answers.next().unwrap_or_default();
        let range = RangeTotals {
            range: plan.range,
            events: single(r.get("events"), "value"),
            persons: single(r.get("persons"), "value"),
            previous_events: single(r.get("events"), "previous"),
            previous_persons: single(r.get("persons"), "previous"),
        };
        let series = Series {
            interval: plan.interval,
            rows: zip_series(r.get("series_events"), r.get("series_persons")),
        };
        let top = TOPS
            .iter()
            .map(|(name, _, _)| {
                let rows = top_rows(
                    r.get(&format!("top_{name}")),
                    single(r.get(&format!("top_{name}_total")), "value"),
                );
                ((*name).to_owned(), rows)
            })
            .collect();
        Ok(Self {
            generated_at: tally_core::time::format_rfc3339(at),
            now,
            today,
            week,
            range,
            series,
            top,
        })
    }
}

fn zip_series(
    events: Option<&ResultTable>,
    persons: Option<&ResultTable>,
) -> Vec<(Value, u64, u64)> {
    let Some(events) = events else {
        return Vec::new();
    };
    let persons: std::collections::HashMap<String, u64> = persons
        .map(|t| {
            t.rows
                .iter()
                .map(|r| (r[0].to_string(), as_u64(r.get(1))))
                .collect()
        })
        .unwrap_or_default();
    events
        .rows
        .iter()
        .map(|r| {
            let bucket = r.first().cloned().unwrap_or(Value::Null);
            let p = persons.get(&bucket.to_string()).copied().unwrap_or(0);
            (bucket, as_u64(r.get(1)), p)
        })
        .collect()
}

fn top_rows(events: Option<&ResultTable>, total: u64) -> Vec<TopRow> {
    let Some(events) = events else {
        return Vec::new();
    };
    let mut rows: Vec<TopRow> = events
        .rows
        .iter()
        .map(|r| {
            let events = as_u64(r.get(1));
            TopRow {
                value: r.first().cloned().unwrap_or(Value::Null),
                events,
                share: if total == 0 {
                    0.0
                } else {
                    events as f64 / total as f64
                },
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| a.value.to_string().cmp(&b.value.to_string()))
    });
    rows.truncate(TOP_N);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_has_one_request_per_range_and_hourly_buckets_for_short_ranges() {
        let at = tally_core::time::parse_rfc3339("2026-11-25T10:30:00Z").unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let plan = Overview::queries(RelativeRange::Today, berlin, at);
        let names: Vec<_> = plan.requests.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["now", "today", "week", "range"]);
        assert_eq!(plan.interval, "hour");
        assert_eq!(plan.requests[0].1.time_range.from, "2026-11-25T10:25:00Z");
        // Monday 2026-11-23 00:00 in Berlin.
        assert_eq!(plan.requests[2].1.time_range.from, "2026-11-22T23:00:00Z");
        assert_eq!(plan.requests[3].1.rules.len(), 14);
        let week = Overview::queries(RelativeRange::PastDays(7), berlin, at);
        assert_eq!(week.interval, "day");
        assert_eq!(week.range.from, "2026-11-18T23:00:00Z");
    }

    #[test]
    fn top_rows_keep_the_largest_with_their_share_of_all() {
        let t = ResultTable {
            columns: vec!["path".into(), "value".into()],
            rows: vec![vec![json!("/a"), json!(5)], vec![json!("/b"), json!(9)]],
        };
        let rows = top_rows(Some(&t), 20);
        assert_eq!((rows[0].value.clone(), rows[0].events), (json!("/b"), 9));
        assert!((rows[0].share - 0.45).abs() < 1e-12);
        assert_eq!(rows[1].value, json!("/a"));
        assert_eq!(top_rows(Some(&t), 0)[0].share, 0.0);
    }

    #[test]
    fn ranges_that_end_now_end_with_the_hour_so_rollups_answer_them() {
        let at = tally_core::time::parse_rfc3339("2026-11-25T10:30:00Z").unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let plan = Overview::queries(RelativeRange::PastDays(7), berlin, at);
        assert_eq!(plan.range.to, "2026-11-25T11:00:00Z");
        let today = &plan.requests[1].1.time_range;
        assert_eq!(
            (today.from.as_str(), today.to.as_str()),
            ("2026-11-24T23:00:00Z", "2026-11-25T11:00:00Z")
        );
        // "Now" stays the last five minutes.
        assert_eq!(plan.requests[0].1.time_range.to, "2026-11-25T10:30:00Z");
        // A range that ends before now keeps its end; one starting off the hour is left alone.
        let y = Overview::queries(RelativeRange::Yesterday, berlin, at);
        assert_eq!(y.range.to, "2026-11-24T23:00:00Z");
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            Overview::queries(RelativeRange::Today, kolkata, at)
                .range
                .to,
            "2026-11-25T10:30:00Z"
        );
        let on_the_hour = at_("2026-11-25T11:00:00Z");
        assert_eq!(end_of_hour(on_the_hour), on_the_hour);
    }

    fn at_(s: &str) -> DateTime<Utc> {
        tally_core::time::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn every_rule_but_now_has_a_rollup_to_answer_it() {
        let project = ProjectId::generate();
        let rollups = Overview::rollups(&project);
        let ids: std::collections::HashSet<_> = rollups.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!((rollups.len(), ids.len()), (12, 12));
        assert!(ids.iter().all(|id| id.starts_with(ROLLUP_PREFIX)));
        let at = tally_core::time::parse_rfc3339("2026-11-25T10:30:00Z").unwrap();
        let plan = Overview::queries(RelativeRange::PastDays(30), Tz::UTC, at);
        for (_, request) in &plan.requests {
            for item in &request.rules {
                let QueryItem::Rule(rule) = item else {
                    panic!("{} is not a rule", item.name())
                };
                let def = rule.rollup_def(&project).unwrap();
                assert!(rollups.iter().any(|(_, d)| *d == def), "{}", rule.name);
            }
        }
    }
}
