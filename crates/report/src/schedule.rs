//! Cron schedules in a time zone (the `croner` crate), and the clock the scheduler reads.
//!
//! Slots are computed in the schedule's zone, so "0 9 * * 1" in Europe/Berlin is 08:00 UTC in
//! winter and 07:00 UTC in summer. Across DST changes croner follows the Open Cron Pattern
//! Specification: a fixed-time slot in the hour that is repeated runs once (the first time), and
//! one in the hour that is skipped runs at the first valid time after it.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use parking_lot::Mutex;
use tally_core::FieldError;

/// Parses a five-field cron expression (or six, with seconds first; or `@daily` and friends).
pub fn parse_cron(expr: &str, field: &str) -> Result<Cron, FieldError> {
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(FieldError::new(
            "invalid_cron",
            field,
            format!(
                "`{expr}` has {fields} fields; a cron expression has 5 (minute hour \
                 day-of-month month day-of-week), or 6 with seconds first"
            ),
        ));
    }
    Cron::from_str(expr)
        .map_err(|e| FieldError::new("invalid_cron", field, format!("`{expr}`: {e}")))
}

/// A parsed schedule: a cron expression read in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

impl CronSchedule {
    pub fn new(expr: &str, tz: Tz) -> Result<Self, FieldError> {
        Ok(Self {
            cron: parse_cron(expr, "schedule.cron")?,
            tz,
        })
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner keeps the fraction of a second it starts from; slots are whole seconds.
        let mut from = t.with_nanosecond(0).unwrap_or(t);
        // In the repeated hour of a DST change croner answers the first pass of an ambiguous
        // local time, which may lie before `t`: search on from there (bounded: an hour of
        // every-second slots at most).
        for _ in 0..4000 {
            let candidate = self
                .cron
                .find_next_occurrence(&from.with_timezone(&self.tz), false)
                .ok()?
                .with_timezone(&Utc);
            if candidate > t {
                return Some(candidate);
            }
            from = candidate.max(from) + chrono::Duration::seconds(1);
        }
        None
    }

    /// The latest slot at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = t.with_nanosecond(0).unwrap_or(t);
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// Where the scheduler reads the time: the system clock, or a clock tests move by hand.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until moved.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock() = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::time::parse_rfc3339;

    fn at(s: &str) -> DateTime<Utc> {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn monday_nine_in_berlin_follows_daylight_saving() {
        let s = CronSchedule::new("0 9 * * 1", "Europe/Berlin".parse().unwrap()).unwrap();
        // Winter (UTC+1), then summer after the change on 2027-03-28 (UTC+2).
        assert_eq!(
            s.next_after(at("2027-03-16T00:00:00Z")),
            Some(at("2027-03-22T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2027-03-22T08:00:00Z")),
            Some(at("2027-03-29T07:00:00Z"))
        );
        assert_eq!(
            s.latest_at_or_before(at("2027-03-29T07:00:00Z")),
            Some(at("2027-03-29T07:00:00Z"))
        );
        assert_eq!(
            s.latest_at_or_before(at("2027-03-29T06:59:59Z")),
            Some(at("2027-03-22T08:00:00Z"))
        );
    }

    #[test]
    fn slots_in_repeated_and_skipped_hours() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 02:30 does not exist on 2027-03-28: the slot moves to the first valid time after.
        let spring = CronSchedule::new("30 2 * * *", berlin).unwrap();
        assert_eq!(
            spring.next_after(at("2027-03-27T12:00:00Z")),
            Some(at("2027-03-28T01:00:00Z"))
        );
        // 02:30 happens twice on 2026-10-25: it runs once, the first time.
        let fall = CronSchedule::new("30 2 * * *", berlin).unwrap();
        let first = fall.next_after(at("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, at("2026-10-25T00:30:00Z"));
        assert_eq!(fall.next_after(first), Some(at("2026-10-26T01:30:00Z")));
        // Asked during the second pass of the repeated hour, the next slot is still ahead.
        assert_eq!(
            fall.next_after(at("2026-10-25T01:10:00Z")),
            Some(at("2026-10-26T01:30:00Z"))
        );
        let quarter = CronSchedule::new("*/15 * * * *", berlin).unwrap();
        let next = quarter.next_after(at("2026-10-25T01:10:00Z")).unwrap();
        assert!(next > at("2026-10-25T01:10:00Z"), "{next}");
    }

    #[test]
    fn slots_are_whole_seconds() {
        let s = CronSchedule::new("*/2 * * * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.next_after(at("2027-01-01T00:00:00.7Z")),
            Some(at("2027-01-01T00:00:02Z"))
        );
        assert_eq!(
            s.latest_at_or_before(at("2027-01-01T00:00:03.5Z")),
            Some(at("2027-01-01T00:00:02Z"))
        );
    }

    #[test]
    fn bad_expressions_are_refused() {
        assert!(parse_cron("0 9 * *", "c").is_err());
        assert!(parse_cron("0 9 * * 1 2027 x", "c").is_err());
        assert!(parse_cron("61 9 * * 1", "c").is_err());
        assert!(parse_cron("*/5 * * * * *", "c").is_ok());
        assert!(parse_cron("@daily", "c").is_ok());
    }
}
