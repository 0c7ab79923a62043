//! How numbers, dates and text are written on charts.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A number the way dashboards show it: `950`, `1.2k`, `34k`, `3.4M`, `0.45`, `-12`.
pub fn compact(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e12 {
        (v / 1e12, "T")
    } else if a >= 1e9 {
        (v / 1e9, "B")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if suffix.is_empty() {
        if a >= 100.0 || v.fract() == 0.0 {
            0
        } else if a >= 1.0 {
            1
        } else {
            2
        }
    } else if scaled.abs() >= 100.0 {
        0
    } else {
        1
    };
    format!("{}{suffix}", trim_zeros(&format!("{scaled:.digits$}")))
}

/// A share as a percentage: `45%`, `4.5%`, `0.45%`.
pub fn percent(fraction: f64) -> String {
    if !fraction.is_finite() {
        return "–".to_owned();
    }
    let p = fraction * 100.0;
    let digits = if p.abs() >= 10.0 || p == 0.0 {
        0
    } else if p.abs() >= 1.0 {
        1
    } else {
        2
    };
    format!("{}%", trim_zeros(&format!("{p:.digits$}")))
}

/// A number in full with thousands separators (`1,234,567`; `12.5`), for tables.
pub fn full(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    if v.fract() != 0.0 {
        let s = format!("{v:.2}");
        return trim_zeros(&s);
    }
    let digits = format!("{}", v.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.');
        if t == "-0" {
            "0".to_owned()
        } else {
            t.to_owned()
        }
    } else if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// How to label points on a time axis, from the spacing of the buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateStyle {
    /// Minutes and hours: `14:00` (with the day where it changes).
    Time,
    /// Days and weeks: `Sep 3`.
    Day,
    /// Months: `Sep 2026`.
    Month,
}

impl DateStyle {
    /// The style for buckets `step_secs` apart.
    pub fn for_step(step_secs: i64) -> Self {
        if step_secs < 86_400 - 3_600 {
            Self::Time
        } else if step_secs < 28 * 86_400 {
            Self::Day
        } else {
            Self::Month
        }
    }

    /// The label of `t` in `tz`; `previous` is the point labelled before it, if any.
    pub fn label(self, t: DateTime<Utc>, previous: Option<DateTime<Utc>>, tz: Tz) -> String {
        let local = t.with_timezone(&tz);
        match self {
            Self::Time => {
                let new_day = previous
                    .is_none_or(|p| p.with_timezone(&tz).date_naive() != local.date_naive());
                if new_day {
                    local.format("%b %-d %H:%M").to_string()
                } else {
                    local.format("%H:%M").to_string()
                }
            }
            Self::Day => local.format("%b %-d").to_string(),
            Self::Month => local.format("%b %Y").to_string(),
        }
    }
}

/// Text safe inside SVG and HTML elements and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// About how wide `s` is in the chart font at `size` px (DejaVu Sans averages 0.6 em).
pub fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.6
}

/// Up to about `target` round tick values (1, 2, 5 × 10ⁿ apart) covering `[min, max]`.
pub fn nice_ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    let (min, max) = if max <= min {
        (min, min + 1.0)
    } else {
        (min, max)
    };
    let raw = (max - min) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let start = (min / step).floor() * step;
    let mut ticks = Vec::new();
    let mut v = start;
    // The last tick is the first at or above `max` (bounded, whatever the floats do).
    for _ in 0..100 {
        ticks.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        if v >= max - step * 1e-9 {
            break;
        }
        v += step;
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers() {
        let cases = [
            (0.0, "0"),
            (7.0, "7"),
            (950.0, "950"),
            (1_234.0, "1.2k"),
            (12_000.0, "12k"),
            (123_456.0, "123k"),
            (3_400_000.0, "3.4M"),
            (2.5e9, "2.5B"),
            (0.456, "0.46"),
            (12.5, "12.5"),
            (-1_500.0, "-1.5k"),
        ];
        for (v, want) in cases {
            assert_eq!(compact(v), want, "{v}");
        }
        assert_eq!(percent(0.4567), "46%");
        assert_eq!(percent(0.045), "4.5%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(full(1_234_567.0), "1,234,567");
        assert_eq!(full(-1_000.0), "-1,000");
        assert_eq!(full(12.5), "12.5");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 9.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(
            nice_ticks(0.0, 1000.0, 4),
            vec![0.0, 250.0, 500.0, 750.0, 1000.0]
        );
        assert_eq!(
            nice_ticks(0.0, 0.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = nice_ticks(-3.0, 7.0, 5);
        assert!(t[0] <= -3.0 && *t.last().unwrap() >= 7.0);
    }

    #[test]
    fn dates_follow_the_time_zone() {
        let t = DateTime::parse_from_rfc3339("2026-09-02T22:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(DateStyle::Day.label(t, None, berlin), "Sep 3");
        assert_eq!(DateStyle::Day.label(t, None, Tz::UTC), "Sep 2");
        assert_eq!(DateStyle::Time.label(t, None, berlin), "Sep 3 00:30");
        assert_eq!(DateStyle::Month.label(t, None, Tz::UTC), "Sep 2026");
        assert_eq!(DateStyle::for_step(3600), DateStyle::Time);
        assert_eq!(DateStyle::for_step(23 * 3600), DateStyle::Day);
        assert_eq!(DateStyle::for_step(30 * 86_400), DateStyle::Month);
    }

    #[test]
    fn text_is_escaped_and_cut() {
        assert_eq!(escape("<a & 'b'>"), "&lt;a &amp; &#39;b&#39;&gt;");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
