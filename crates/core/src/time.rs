//! Time ranges and bucket intervals, with time zones.
//!
//! Buckets are computed in the query's time zone on the local calendar (a "day" in Europe/Berlin
//! is 23 or 25 hours long across a DST change) and reported as the UTC instant they start at.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::FieldError;

/// A half-open range of event time, `[from, to)`, and the time zone buckets are computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub timezone: Tz,
}

/// The wire form of a [`TimeRange`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRangeSpec {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub timezone: Option<String>,
}

impl TimeRange {
    /// Validates a wire time range. `field` is the path used in errors.
    pub fn from_spec(spec: &TimeRangeSpec, field: &str) -> Result<Self, FieldError> {
        let from = parse_rfc3339(&spec.from).ok_or_else(|| {
            FieldError::new(
                "invalid_timestamp",
                format!("{field}.from"),
                "must be an RFC 3339 timestamp such as 2026-08-01T00:00:00Z",
            )
        })?;
        let to = parse_rfc3339(&spec.to).ok_or_else(|| {
            FieldError::new(
                "invalid_timestamp",
                format!("{field}.to"),
                "must be an RFC 3339 timestamp such as 2026-11-01T00:00:00Z",
            )
        })?;
        if to <= from {
            return Err(FieldError::new(
                "invalid_range",
                format!("{field}.to"),
                "must be after `from`",
            ));
        }
        let timezone = match &spec.timezone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                FieldError::new(
                    "invalid_timezone",
                    format!("{field}.timezone"),
                    format!("unknown IANA time zone `{name}`"),
                )
            })?,
        };
        Ok(Self { from, to, timezone })
    }
}

/// Parses an RFC 3339 timestamp into UTC.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Formats an instant the way every API answer does: `2026-08-03T00:00:00Z`.
pub fn format_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The width of a time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The start of the bucket that contains `t`, in `tz`, as a UTC instant. Weeks start on Monday.
    pub fn truncate(self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = t.with_timezone(&tz).naive_local();
        let start: NaiveDateTime = match self {
            Self::Minute => {
                // Offsets are whole minutes everywhere today, so minutes truncate in UTC.
                let secs = t.timestamp().div_euclid(60) * 60;
                return DateTime::from_timestamp(secs, 0).unwrap_or(t);
            }
            Self::Hour => {
                // Truncating the UTC instant keeps the two 01:00 hours of a DST fall-back apart;
                // zones with a half-hour offset get buckets starting at their local :00.
                let offset_secs = local.and_utc().timestamp() - t.timestamp();
                let local_secs = t.timestamp() + offset_secs;
                let start_local = local_secs.div_euclid(3600) * 3600;
                let secs = start_local - offset_secs;
                return DateTime::from_timestamp(secs, 0).unwrap_or(t);
            }
            Self::Day => local.date().and_hms_opt(0, 0, 0).unwrap_or(local),
            Self::Week => {
                let days = i64::from(local.date().weekday().num_days_from_monday());
                (local.date() - Duration::days(days))
                    .and_hms_opt(0, 0, 0)
                    .unwrap_or(local)
            }
            Self::Month => NaiveDate::from_ymd_opt(local.year(), local.month(), 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .unwrap_or(local),
        };
        local_to_utc(start, tz)
    }

    /// The start of the bucket after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        match self {
            Self::Minute => start + Duration::minutes(1),
            Self::Hour => start + Duration::hours(1),
            Self::Day | Self::Week | Self::Month => {
                let local = start.with_timezone(&tz).naive_local();
                let next = match self {
                    Self::Day => local + Duration::days(1),
                    Self::Week => local + Duration::days(7),
                    _ => {
                        let (y, m) = if local.month() == 12 {
                            (local.year() + 1, 1)
                        } else {
                            (local.year(), local.month() + 1)
                        };
                        NaiveDate::from_ymd_opt(y, m, 1)
                            .and_then(|d| d.and_hms_opt(0, 0, 0))
                            .unwrap_or(local)
                    }
                };
                local_to_utc(next, tz)
            }
        }
    }

    /// Every bucket start of `range`, in order, including the bucket that contains `range.from`.
    pub fn buckets(self, range: &TimeRange) -> Vec<DateTime<Utc>> {
        self.bucket_starts(range).collect()
    }

    /// The bucket starts of `range`, lazily (to count them without building the list).
    pub fn bucket_starts(self, range: &TimeRange) -> impl Iterator<Item = DateTime<Utc>> {
        let (to, tz) = (range.to, range.timezone);
        let mut next = Some(self.truncate(range.from, tz)).filter(|b| *b < to);
        std::iter::from_fn(move || {
            let b = next?;
            let n = self.next(b, tz);
            next = Some(n).filter(|n| *n > b && *n < to);
            Some(b)
        })
    }
}

/// Resolves a local wall-clock time to UTC: the earlier instant when ambiguous (DST fall-back),
/// the first valid instant after a gap (DST spring-forward, e.g. midnight in America/Santiago).
fn local_to_utc(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
        LocalResult::None => {
            let mut probe = local;
            for _ in 0..(4 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            local.and_utc()
        }
    }
}

/// A time range relative to an instant (a report's run, a dashboard's view), in whole periods
/// of a time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelativeRange {
    Today,
    Yesterday,
    /// The `n` whole days before today (today left out, so the numbers are final).
    LastDays(u32),
    /// The `n` days ending now: today so far and the `n - 1` days before it.
    PastDays(u32),
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
        if let Some(d) = n("past_", "_days").and_then(|d| parse(&d, 366)) {
            return Ok(Self::PastDays(d));
        }
        if let Some(w) = n("last_", "_weeks").and_then(|w| parse(&w, 104)) {
            return Ok(Self::LastWeeks(w));
        }
        if let Some(m) = n("last_", "_months").and_then(|m| parse(&m, 36)) {
            return Ok(Self::LastMonths(m));
        }
        Err(format!(
            "unknown time range `{s}`: use today, yesterday, last_N_days (N up to 366), \
             past_N_days (today included), last_N_weeks, last_N_months, week_to_date, previous_week, month_to_date, \
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
            Self::PastDays(n) => write!(f, "past_{n}_days"),
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
            Self::PastDays(n) => (day(today - Duration::days(i64::from(n) - 1)), at),
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

/// A relative range as resolved at an instant: what a rendered report, a dashboard widget or
/// the overview shows it covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedRange {
    /// The relative range as written (`past_7_days`).
    pub relative: String,
    pub from: String,
    pub to: String,
    pub timezone: String,
}

impl ResolvedRange {
    pub fn new(relative: RelativeRange, range: &TimeRange) -> Self {
        Self {
            relative: relative.to_string(),
            from: format_rfc3339(range.from),
            to: format_rfc3339(range.to),
            timezone: range.timezone.name().to_owned(),
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

/// A retention period as written: `90d`, `90 days`, `12w`, `13 months`, `2y`, `1 year`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxAge {
    Days(u32),
    Months(u32),
}

impl std::str::FromStr for MaxAge {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let bad =
            || format!("`{s}` is no retention period: write e.g. 90d, 12 weeks, 13 months or 2y");
        let n: u32 = n.parse().map_err(|_| bad())?;
        if n == 0 || n > 100_000 {
            return Err(bad());
        }
        match unit.trim() {
            "d" | "day" | "days" => Ok(Self::Days(n)),
            "w" | "week" | "weeks" => Ok(Self::Days(n.saturating_mul(7))),
            "m" | "mo" | "month" | "months" => Ok(Self::Months(n)),
            "y" | "year" | "years" => Ok(Self::Months(n.saturating_mul(12))),
            _ => Err(bad()),
        }
    }
}

impl MaxAge {
    /// The instant before which events have expired at `now`.
    pub fn cutoff(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Days(d) => now - Duration::days(i64::from(d)),
            Self::Months(m) => now
                .checked_sub_months(chrono::Months::new(m))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_periods() {
        let now = parse_rfc3339("2026-12-02T12:00:00Z").unwrap();
        let cut = |s: &str| format_rfc3339(s.parse::<MaxAge>().unwrap().cutoff(now));
        assert_eq!(cut("90d"), "2026-09-03T12:00:00Z");
        assert_eq!(cut("2 weeks"), "2026-11-18T12:00:00Z");
        assert_eq!(cut("13 months"), "2025-11-02T12:00:00Z");
        assert_eq!(cut("1y"), "2025-12-02T12:00:00Z");
        for bad in ["", "0d", "ninety days", "5 fortnights", "-3d"] {
            assert!(bad.parse::<MaxAge>().is_err(), "{bad}");
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn relative_ranges_resolve_in_the_time_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Monday 2026-11-23 09:00 in Berlin (UTC+1).
        let now = t("2026-11-23T08:00:00Z");
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
                "past_1_days",
                "2026-11-22T23:00:00Z",
                "2026-11-23T08:00:00Z",
            ),
            (
                "past_7_days",
                "2026-11-16T23:00:00Z",
                "2026-11-23T08:00:00Z",
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
            assert_eq!((range.from, range.to), (t(from), t(to)), "{name}");
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
    fn days_follow_dst_in_berlin() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-10-25 is the fall-back day: 25 hours long.
        let b = Interval::Day.truncate(t("2026-10-25T12:00:00Z"), tz);
        assert_eq!(b, t("2026-10-24T22:00:00Z"));
        assert_eq!(Interval::Day.next(b, tz), t("2026-10-25T23:00:00Z"));
    }

    #[test]
    fn weeks_start_monday_and_months_on_the_first() {
        let tz = Tz::UTC;
        assert_eq!(
            Interval::Week.truncate(t("2026-11-29T23:59:59Z"), tz),
            t("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            Interval::Month.truncate(t("2026-12-31T10:00:00Z"), tz),
            t("2026-12-01T00:00:00Z")
        );
        assert_eq!(
            Interval::Month.next(t("2026-12-01T00:00:00Z"), tz),
            t("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn hours_in_half_hour_zones() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            Interval::Hour.truncate(t("2026-01-01T10:10:00Z"), tz),
            t("2026-01-01T09:30:00Z")
        );
    }

    #[test]
    fn buckets_cover_the_range() {
        let range = TimeRange {
            from: t("2026-03-28T00:00:00Z"),
            to: t("2026-03-31T00:00:00Z"),
            timezone: "Europe/Berlin".parse().unwrap(),
        };
        let b = Interval::Day.buckets(&range);
        assert_eq!(
            b,
            vec![
                t("2026-03-27T23:00:00Z"),
                t("2026-03-28T23:00:00Z"),
                t("2026-03-29T22:00:00Z"),
                t("2026-03-30T22:00:00Z"),
            ]
        );
    }
}
