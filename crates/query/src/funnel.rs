//! Funnels: how many persons did step 1, then step 2, ... in this order, each within `window`
//! of their step-1 event: the semantics of ClickHouse's `windowFunnel`.
//!
//! Per person, events are read in time order. A step-1 event (which must lie in the time range)
//! starts a chain; an event of step k extends a chain that reached step k-1 when it happens no
//! earlier than that chain's last step and within `window` of its start. Like `windowFunnel`, the
//! most recent step-1 event restarts the chain at step 1. One event counts for one step only (an
//! event matching steps 2 and 3 cannot complete both), and events at the same instant may follow
//! each other. A person counts for every step up to the furthest one reached; the time to convert
//! to step k is measured on the chain that first reached it. With a breakdown, a person belongs to
//! the breakdown value of the step-1 event of that chain.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::{FieldError, ProjectId, TimeRange};
use tally_store::{ResultTable, StepEvent, StepEvents, StepQuery};

use crate::fields::resolve_field;
use crate::rule::{FilterSpec, compile_filters};

pub(crate) const MAX_STEPS: usize = 20;

/// `{"kind": "funnel", "name": ..., "steps": [{"event": "signup"}, {"event": "login", "filters": [...]}],
///   "window": "7d", "breakdown": "context.country"}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelQuery {
    pub name: String,
    pub steps: Vec<FunnelStep>,
    /// How long after step 1 the last step may happen: `30m`, `24h`, `7d`, `2w`.
    pub window: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSpec>,
}

/// Per step: the persons who reached it, and their times to convert (microseconds).
type StepTotals = (Vec<u64>, Vec<Vec<i64>>);

/// Parses `30m`, `24h`, `7d`, `2w` (and anything `humantime` reads) into microseconds.
fn window_us(window: &str, at: &str) -> Result<i64, FieldError> {
    let bad = || {
        FieldError::new(
            "invalid_window",
            format!("{at}.window"),
            "a duration such as 30m, 24h, 7d or 2w",
        )
    };
    let d = humantime::parse_duration(window.trim()).map_err(|_| bad())?;
    let us = i64::try_from(d.as_micros()).map_err(|_| bad())?;
    if us <= 0 || us > 366 * 86_400_000_000 {
        return Err(FieldError::new(
            "invalid_window",
            format!("{at}.window"),
            "between 1 second and 366 days",
        ));
    }
    Ok(us)
}

impl FunnelQuery {
    pub(crate) fn compile(
        &self,
        project: &ProjectId,
        range: &TimeRange,
        at: &str,
    ) -> Result<(StepQuery, i64), FieldError> {
        if self.steps.len() < 2 || self.steps.len() > MAX_STEPS {
            return Err(FieldError::new(
                "invalid_steps",
                format!("{at}.steps"),
                format!("a funnel has 2 to {MAX_STEPS} steps"),
            ));
        }
        let window = window_us(&self.window, at)?;
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, s) in self.steps.iter().enumerate() {
            let sat = format!("{at}.steps[{i}]");
            let filters = compile_filters(s.event.as_deref(), &s.filters, &sat)?;
            if filters.is_empty() {
                return Err(FieldError::new(
                    "empty_step",
                    sat,
                    "a step needs an `event` or `filters`",
                ));
            }
            steps.push(filters);
        }
        let breakdown = self
            .breakdown
            .as_deref()
            .map(|b| resolve_field(b, &format!("{at}.breakdown")))
            .transpose()?;
        let to = range.to.timestamp_micros();
        Ok((
            StepQuery {
                project: project.clone(),
                from: range.from.timestamp_micros(),
                // Conversions may complete up to a window after the range.
                to: to.saturating_add(window),
                steps,
                breakdown,
            },
            window,
        ))
    }

    /// Builds the result from the step events (ordered by person, then time).
    pub(crate) fn evaluate(&self, found: &StepEvents, window: i64, range_end: i64) -> ResultTable {
        let n = self.steps.len();
        let events = found.events.as_slice();
        // Per breakdown value (by its index): persons reaching each step, and their times to
        // convert.
        let mut totals: Vec<Option<StepTotals>> = vec![None; found.breakdowns.len()];
        let mut i = 0;
        while i < events.len() {
            let mut j = i;
            while j < events.len() && events[j].person == events[i].person {
                j += 1;
            }
            if let Some((level, times, breakdown)) =
                person_funnel(&events[i..j], n, window, range_end)
                && let Some(slot) = totals.get_mut(breakdown as usize)
            {
                let entry = slot.get_or_insert_with(|| (vec![0; n], vec![Vec::new(); n]));
                for (k, time) in times.iter().enumerate().take(level) {
                    entry.0[k] += 1;
                    if k > 0 {
                        entry.1[k].push(*time);
                    }
                }
            }
            i = j;
        }
        // In the order of the breakdown values, null first.
        let mut groups: Vec<(Option<String>, StepTotals)> = totals
            .into_iter()
            .zip(&found.breakdowns)
            .filter_map(|(t, b)| Some((b.clone(), t?)))
            .collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        if self.breakdown.is_none() && groups.is_empty() {
            groups.push((None, (vec![0; n], vec![Vec::new(); n])));
        }
        let mut columns = Vec::new();
        if let Some(b) = &self.breakdown {
            columns.push(b.clone());
        }
        columns.extend(
            [
                "step",
                "event",
                "persons",
                "conversion_from_first",
                "conversion_from_previous",
                "median_seconds_to_convert",
            ]
            .map(String::from),
        );
        let mut rows = Vec::new();
        for (breakdown, (persons, mut times)) in groups {
            for k in 0..n {
                let mut row = Vec::new();
                if self.breakdown.is_some() {
                    row.push(breakdown.clone().map_or(Value::Null, Value::String));
                }
                let ratio = |a: u64, b: u64| {
                    if b == 0 {
                        Value::Null
                    } else {
                        Value::from(a as f64 / b as f64)
                    }
                };
                row.push(Value::from(k + 1));
                row.push(
                    self.steps[k]
                        .event
                        .clone()
                        .map_or(Value::Null, Value::String),
                );
                row.push(Value::from(persons[k]));
                row.push(ratio(persons[k], persons[0]));
                row.push(if k == 0 {
                    Value::from(1.0)
                } else {
                    ratio(persons[k], persons[k - 1])
                });
                row.push(if k == 0 {
                    Value::Null
                } else {
                    median_seconds(&mut times[k])
                });
                rows.push(row);
            }
        }
        ResultTable { columns, rows }
    }
}

/// How far one person got: (steps reached, microseconds from step 1 to each step, breakdown
/// index).
fn person_funnel(
    events: &[StepEvent],
    n: usize,
    window: i64,
    range_end: i64,
) -> Option<(usize, Vec<i64>, u32)> {
    // chain[k] = (start time, time of step k, breakdown of the start) of the chain at step k.
    let mut chain: Vec<Option<(i64, i64, u32)>> = vec![None; n];
    let mut level = 0;
    let mut times = vec![0i64; n];
    let mut breakdown = 0;
    for ev in events {
        // From the last step down, so one event extends a chain by one step at most.
        for k in (0..n).rev() {
            if ev.steps & (1 << k) == 0 {
                continue;
            }
            if k == 0 {
                if ev.timestamp < range_end {
                    chain[0] = Some((ev.timestamp, ev.timestamp, ev.breakdown));
                    if level == 0 {
                        level = 1;
                        breakdown = ev.breakdown;
                    }
                }
            } else if let Some((start, at, b)) = chain[k - 1]
                && ev.timestamp >= at
                && ev.timestamp - start <= window
            {
                chain[k] = Some((start, ev.timestamp, b));
                if k + 1 > level {
                    level = k + 1;
                    times[k] = ev.timestamp - start;
                    breakdown = b;
                }
            }
        }
    }
    (level > 0).then_some((level, times, breakdown))
}

fn median_seconds(times: &mut [i64]) -> Value {
    if times.is_empty() {
        return Value::Null;
    }
    times.sort_unstable();
    let m = times.len() / 2;
    let us = if times.len() % 2 == 1 {
        times[m] as f64
    } else {
        (times[m - 1] + times[m]) as f64 / 2.0
    };
    Value::from(us / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    fn ev(t: i64, steps: u64) -> StepEvent {
        StepEvent {
            person: 0,
            breakdown: 0,
            timestamp: t,
            steps,
        }
    }

    #[test]
    fn window_funnel_semantics() {
        let w = 24 * H;
        let end = i64::MAX;
        // In order within the window: all three steps.
        assert_eq!(
            person_funnel(&[ev(0, 1), ev(H, 2), ev(2 * H, 4)], 3, w, end)
                .unwrap()
                .0,
            3
        );
        // Out of order: step 2 before step 1 does not count.
        assert_eq!(
            person_funnel(&[ev(0, 2), ev(H, 1), ev(2 * H, 4)], 3, w, end)
                .unwrap()
                .0,
            1
        );
        // Exactly on the window boundary counts; a microsecond later does not.
        assert_eq!(
            person_funnel(&[ev(0, 1), ev(w, 2)], 2, w, end).unwrap().0,
            2
        );
        assert_eq!(
            person_funnel(&[ev(0, 1), ev(w + 1, 2)], 2, w, end)
                .unwrap()
                .0,
            1
        );
        // A later step-1 event restarts the chain and can still convert.
        assert_eq!(
            person_funnel(&[ev(0, 1), ev(30 * H, 1), ev(31 * H, 2)], 2, w, end)
                .unwrap()
                .1[1],
            H
        );
        // One event matching steps 1 and 2 counts once.
        assert_eq!(person_funnel(&[ev(0, 3)], 2, w, end).unwrap().0, 1);
        assert_eq!(
            person_funnel(&[ev(0, 3), ev(H, 3)], 2, w, end).unwrap().0,
            2
        );
        // Step 1 after the range does not start a funnel.
        assert!(person_funnel(&[ev(10, 1)], 2, w, 5).is_none());
    }
}
