//! Time ranges and bucket intervals, with time zones.
//!
//! Buckets are computed in the query's time zone on the local calendar (a "day" in Europe/Berlin
//! is 23 or 25 hours long across a DST change) and reported as the UTC instant they start at.

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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_rfc3339(s).unwrap()
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
