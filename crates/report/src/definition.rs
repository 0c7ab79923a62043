//! What a report is: a title, sections (each a query shown as a chart, a table or a number), a
//! relative time range in a time zone, an optional schedule, and where to deliver it.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::time::TimeRangeSpec;
use tally_core::{FieldError, Interval, TimeRange, time::format_rfc3339};
use tally_query::{Compare, QueryItem};
use tally_viz::ChartKind;

/// At most this many sections in a report.
pub const MAX_SECTIONS: usize = 20;
/// At most this many delivery channels.
pub const MAX_CHANNELS: usize = 10;
/// At most this many email recipients per channel.
pub const MAX_RECIPIENTS: usize = 50;

/// A report as `POST /v1/reports` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportDefinition {
    pub title: String,
    pub time_range: RelativeRange,
    /// The IANA zone the range and the chart dates are in; UTC if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub sections: Vec<Section>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliver: Vec<Channel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub title: String,
    /// A query as one entry of `/v1/query`'s `rules`; its `name` may be left out.
    pub query: QueryItem,
    #[serde(default)]
    pub display: Display,
    /// The chart to draw when `display` is `chart`; chosen from the query when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Display {
    #[default]
    Chart,
    Table,
    /// One number with its change against the previous period (aggregation rules only).
    Number,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds first.
    pub cron: String,
    /// The zone the cron expression is read in; the report's zone if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// What to do with a slot that passed while Tally was down.
    #[serde(default)]
    pub catch_up: CatchUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Run the latest missed slot once on start.
    #[default]
    RunOnce,
    /// Skip missed slots (recorded as `skipped`) and wait for the next one.
    Skip,
}

/// Where a rendered report goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Channel {
    /// A directory under the server's report directory (`--report-dir`).
    Directory { path: String },
    /// An HTTP POST of the JSON rendering, signed with HMAC-SHA256 when `secret` is given.
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u64>,
    },
    /// An email with the HTML report as body, charts as inline PNG images and the sections as
    /// CSV attachments, through the server's SMTP relay (`--smtp-url`).
    Email {
        to: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
}

impl Channel {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Directory { .. } => "directory",
            Self::Webhook { .. } => "webhook",
            Self::Email { .. } => "email",
        }
    }
}

/// A time range relative to the instant a report runs, in whole periods of its time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelativeRange {
    Today,
    Yesterday,
    /// The `n` whole days before today (today left out, so the numbers are final).
    LastDays(u32),
    LastWeeks(u32),
    LastMonths(u32),
    WeekToDate,
    PreviousWeek,
    MonthToDate,
    PreviousMonth,
    QuarterToDate,
    PreviousQuarter,
    YearToDate,
    PreviousYear,
}

impl FromStr for RelativeRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let fixed = match s {
            "today" => Some(Self::Today),
            "yesterday" => Some(Self::Yesterday),
            "week_to_date" | "this_week" => Some(Self::WeekToDate),
            "previous_week" | "last_week" => Some(Self::PreviousWeek),
            "month_to_date" | "this_month" => Some(Self::MonthToDate),
            "previous_month" | "last_month" => Some(Self::PreviousMonth),
            "quarter_to_date" => Some(Self::QuarterToDate),
            "previous_quarter" => Some(Self::PreviousQuarter),
            "year_to_date" | "this_year" => Some(Self::YearToDate),
            "previous_year" | "last_year" => Some(Self::PreviousYear),
            _ => None,
        };
        if let Some(r) = fixed {
            return Ok(r);
        }
        let parse =
            |rest: &str, max: u32| rest.parse::<u32>().ok().filter(|n| (1..=max).contains(n));
        let n = |prefix: &str, suffix: &str| {
            s.strip_prefix(prefix)?
                .strip_suffix(suffix)
                .map(str::to_owned)
        };
        if let Some(d) = n("last_", "_days").and_then(|d| parse(&d, 366)) {
            return Ok(Self::LastDays(d));
        }
        if let Some(w) = n("last_", "_weeks").and_then(|w| parse(&w, 104)) {
            return Ok(Self::LastWeeks(w));
        }
        if let Some(m) = n("last_", "_months").and_then(|m| parse(&m, 36)) {
            return Ok(Self::LastMonths(m));
        }
        Err(format!(
            "unknown time range `{s}`: use today, yesterday, last_N_days (N up to 366), \
             last_N_weeks, last_N_months, week_to_date, previous_week, month_to_date, \
             previous_month, quarter_to_date, previous_quarter, year_to_date or previous_year"
        ))
    }
}

impl std::fmt::Display for RelativeRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Today => f.write_str("today"),
            Self::Yesterday => f.write_str("yesterday"),
            Self::LastDays(n) => write!(f, "last_{n}_days"),
            Self::LastWeeks(n) => write!(f, "last_{n}_weeks"),
            Self::LastMonths(n) => write!(f, "last_{n}_months"),
            Self::WeekToDate => f.write_str("week_to_date"),
            Self::PreviousWeek => f.write_str("previous_week"),
            Self::MonthToDate => f.write_str("month_to_date"),
            Self::PreviousMonth => f.write_str("previous_month"),
            Self::QuarterToDate => f.write_str("quarter_to_date"),
            Self::PreviousQuarter => f.write_str("previous_quarter"),
            Self::YearToDate => f.write_str("year_to_date"),
            Self::PreviousYear => f.write_str("previous_year"),
        }
    }
}

impl Serialize for RelativeRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RelativeRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The first instant of `date` in `tz` (midnight, or the end of a DST gap at midnight).
fn start_of(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let noon = date.and_hms_opt(12, 0, 0).unwrap_or_default();
    let at_noon = tz
        .from_local_datetime(&noon)
        .earliest()
        .map_or_else(|| noon.and_utc(), |d| d.with_timezone(&Utc));
    Interval::Day.truncate(at_noon, tz)
}

fn months_back(date: NaiveDate, months: u32) -> NaiveDate {
    let total = date.year() * 12 + date.month0() as i32 - months as i32;
    NaiveDate::from_ymd_opt(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1)
        .unwrap_or(date)
}

impl RelativeRange {
    /// The absolute range this means at instant `at` in `tz`. Ranges that end "now" end at
    /// `at`; the others end at a period boundary.
    pub fn resolve(self, at: DateTime<Utc>, tz: Tz) -> TimeRange {
        let today = at.with_timezone(&tz).date_naive();
        let day = |d: NaiveDate| start_of(d, tz);
        let week_start = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
        let month_start = today.with_day(1).unwrap_or(today);
        let quarter_start =
            NaiveDate::from_ymd_opt(today.year(), (today.month0() / 3) * 3 + 1, 1).unwrap_or(today);
        let year_start = NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today);
        let (from, to) = match self {
            Self::Today => (day(today), at),
            Self::Yesterday => (day(today - Duration::days(1)), day(today)),
            Self::LastDays(n) => (day(today - Duration::days(i64::from(n))), day(today)),
            Self::LastWeeks(n) => (
                day(week_start - Duration::weeks(i64::from(n))),
                day(week_start),
            ),
            Self::LastMonths(n) => (day(months_back(month_start, n)), day(month_start)),
            Self::WeekToDate => (day(week_start), at),
            Self::PreviousWeek => (day(week_start - Duration::weeks(1)), day(week_start)),
            Self::MonthToDate => (day(month_start), at),
            Self::PreviousMonth => (day(months_back(month_start, 1)), day(month_start)),
            Self::QuarterToDate => (day(quarter_start), at),
            Self::PreviousQuarter => (day(months_back(quarter_start, 3)), day(quarter_start)),
            Self::YearToDate => (day(year_start), at),
            Self::PreviousYear => (day(months_back(year_start, 12)), day(year_start)),
        };
        // A range that ends now, at the first instant of its period, is still one instant wide.
        let to = to.max(from + Duration::microseconds(1));
        TimeRange {
            from,
            to,
            timezone: tz,
        }
    }
}

/// The wire form of a resolved range (what `/v1/query` takes).
pub fn range_spec(range: &TimeRange) -> TimeRangeSpec {
    TimeRangeSpec {
        from: format_rfc3339(range.from),
        to: format_rfc3339(range.to),
        timezone: Some(range.timezone.name().to_owned()),
    }
}

pub(crate) fn parse_tz(name: Option<&str>, field: &str) -> Result<Tz, FieldError> {
    match name {
        None => Ok(Tz::UTC),
        Some(n) => n.parse::<Tz>().map_err(|_| {
            FieldError::new(
                "invalid_timezone",
                field,
                format!("unknown IANA time zone `{n}`"),
            )
        }),
    }
}

impl ReportDefinition {
    /// Parses a definition from the API's JSON, filling each section's query name when left
    /// out, and checks it. Errors name the offending field.
    pub fn from_json(mut v: Value) -> Result<Self, FieldError> {
        if let Some(sections) = v.get_mut("sections").and_then(Value::as_array_mut) {
            for (i, s) in sections.iter_mut().enumerate() {
                if let Some(q) = s.get_mut("query").and_then(Value::as_object_mut)
                    && !q.contains_key("name")
                {
                    q.insert("name".into(), Value::String(format!("section_{}", i + 1)));
                }
            }
        }
        let def: Self = serde_path_to_error::deserialize(v).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            FieldError::new("invalid_report", field, e.into_inner().to_string())
        })?;
        def.validate()?;
        Ok(def)
    }

    /// The report's time zone.
    pub fn tz(&self) -> Tz {
        parse_tz(self.timezone.as_deref(), "timezone").unwrap_or(Tz::UTC)
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if self.title.trim().is_empty() || self.title.chars().count() > 200 {
            return Err(FieldError::new(
                "invalid_title",
                "title",
                "1 to 200 characters",
            ));
        }
        parse_tz(self.timezone.as_deref(), "timezone")?;
        if self.sections.is_empty() || self.sections.len() > MAX_SECTIONS {
            return Err(FieldError::new(
                "invalid_sections",
                "sections",
                format!("between 1 and {MAX_SECTIONS} sections"),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sections.iter().enumerate() {
            let at = format!("sections[{i}]");
            if s.title.chars().count() > 200 {
                return Err(FieldError::new(
                    "invalid_title",
                    format!("{at}.title"),
                    "at most 200 characters",
                ));
            }
            if !names.insert(s.query.name()) {
                return Err(FieldError::new(
                    "duplicate_name",
                    format!("{at}.query.name"),
                    "two sections' queries have the same name",
                ));
            }
            if matches!(s.query, QueryItem::Formula(_)) {
                return Err(FieldError::new(
                    "invalid_query",
                    format!("{at}.query.kind"),
                    "a section holds one query; formulas combine several, so they cannot be a section",
                ));
            }
            if s.display == Display::Number && !matches!(s.query, QueryItem::Rule(_)) {
                return Err(FieldError::new(
                    "invalid_display",
                    format!("{at}.display"),
                    "`number` shows an aggregation rule's total; use `chart` or `table` for this kind",
                ));
            }
        }
        if let Some(s) = &self.schedule {
            crate::schedule::parse_cron(&s.cron, "schedule.cron")?;
            parse_tz(s.timezone.as_deref(), "schedule.timezone")?;
        }
        if self.deliver.len() > MAX_CHANNELS {
            return Err(FieldError::new(
                "invalid_deliver",
                "deliver",
                format!("at most {MAX_CHANNELS} channels"),
            ));
        }
        for (i, c) in self.deliver.iter().enumerate() {
            crate::delivery::validate_channel(c, &format!("deliver[{i}]"))?;
        }
        Ok(())
    }

    /// The query each section runs: a `number` section's rule counts the whole range and is
    /// compared with the previous period.
    pub fn section_query(&self, i: usize) -> QueryItem {
        let s = &self.sections[i];
        match (&s.query, s.display) {
            (QueryItem::Rule(r), Display::Number) => {
                let mut r = r.clone();
                r.interval = None;
                r.compare = Some(Compare::PreviousPeriod);
                r.cumulative = false;
                QueryItem::Rule(r)
            }
            (q, _) => q.clone(),
        }
    }

    /// The chart a section draws.
    pub fn section_chart(&self, i: usize) -> ChartKind {
        let s = &self.sections[i];
        if let Some(c) = s.chart {
            return c;
        }
        match &s.query {
            QueryItem::Funnel(_) => ChartKind::Funnel,
            QueryItem::Retention(_) => ChartKind::Retention,
            QueryItem::Rule(r) if r.interval.is_none() => ChartKind::Hbar,
            QueryItem::Stickiness(_) | QueryItem::Paths(_) => ChartKind::Hbar,
            QueryItem::Lifecycle(_) => ChartKind::Bar,
            _ => ChartKind::Line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        tally_core::time::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn relative_ranges_resolve_in_the_time_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Monday 2026-11-23 09:00 in Berlin (UTC+1).
        let now = at("2026-11-23T08:00:00Z");
        let cases = [
            (
                "last_7_days",
                "2026-11-15T23:00:00Z",
                "2026-11-22T23:00:00Z",
            ),
            ("yesterday", "2026-11-21T23:00:00Z", "2026-11-22T23:00:00Z"),
            ("today", "2026-11-22T23:00:00Z", "2026-11-23T08:00:00Z"),
            (
                "previous_week",
                "2026-11-15T23:00:00Z",
                "2026-11-22T23:00:00Z",
            ),
            (
                "week_to_date",
                "2026-11-22T23:00:00Z",
                "2026-11-23T08:00:00Z",
            ),
            (
                "month_to_date",
                "2026-10-31T23:00:00Z",
                "2026-11-23T08:00:00Z",
            ),
            // October holds the DST change: it starts at +2 and ends at +1.
            (
                "previous_month",
                "2026-09-30T22:00:00Z",
                "2026-10-31T23:00:00Z",
            ),
            (
                "last_2_months",
                "2026-08-31T22:00:00Z",
                "2026-10-31T23:00:00Z",
            ),
            (
                "previous_quarter",
                "2026-06-30T22:00:00Z",
                "2026-09-30T22:00:00Z",
            ),
            (
                "previous_year",
                "2024-12-31T23:00:00Z",
                "2025-12-31T23:00:00Z",
            ),
            (
                "last_2_weeks",
                "2026-11-08T23:00:00Z",
                "2026-11-22T23:00:00Z",
            ),
        ];
        for (name, from, to) in cases {
            let r: RelativeRange = name.parse().unwrap();
            assert_eq!(r.to_string(), name);
            let range = r.resolve(now, berlin);
            assert_eq!((range.from, range.to), (at(from), at(to)), "{name}");
        }
        assert!("last_0_days".parse::<RelativeRange>().is_err());
        assert!(
            "fortnight"
                .parse::<RelativeRange>()
                .unwrap_err()
                .contains("last_N_days")
        );
    }

    #[test]
    fn definitions_are_checked_field_by_field() {
        let ok = json!({"title": "Weekly", "time_range": "last_7_days", "timezone": "Europe/Berlin",
            "sections": [{"title": "Views", "query": {"event": "pageview", "interval": "day"}},
                         {"title": "Signups", "query": {"event": "signup"}, "display": "number"}],
            "schedule": {"cron": "0 9 * * 1"},
            "deliver": [{"type": "directory", "path": "weekly"}]});
        let def = ReportDefinition::from_json(ok.clone()).unwrap();
        assert_eq!(def.sections[0].query.name(), "section_1");
        assert_eq!(def.section_chart(0), ChartKind::Line);
        let QueryItem::Rule(r) = def.section_query(1) else {
            panic!()
        };
        assert_eq!(r.compare, Some(Compare::PreviousPeriod));
        let bad = |patch: Value, field: &str| {
            let mut v = ok.clone();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            let e = ReportDefinition::from_json(v).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        };
        bad(json!({"time_range": "fortnight"}), "time_range");
        bad(json!({"timezone": "Mars/Olympus"}), "timezone");
        bad(json!({"sections": []}), "sections");
        bad(json!({"schedule": {"cron": "0 9 * *"}}), "schedule.cron");
        bad(json!({"deliver": [{"type": "fax"}]}), "deliver[0].type");
        bad(
            json!({"deliver": [{"type": "directory", "path": "../etc"}]}),
            "deliver[0].path",
        );
        bad(
            json!({"deliver": [{"type": "webhook", "url": "ftp://x"}]}),
            "deliver[0].url",
        );
        bad(
            json!({"deliver": [{"type": "email", "to": ["not-an-address"]}]}),
            "deliver[0].to[0]",
        );
        bad(
            json!({"sections": [{"title": "f", "display": "number",
                "query": {"kind": "funnel", "steps": [{"event": "a"}, {"event": "b"}], "window": "1d"}}]}),
            "sections[0].display",
        );
    }
}
