//! `AggregationRule`: what to count, over which events, broken down how.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::{FieldError, Interval, ProjectId, TimeRange};
use tally_store::{AggregateQuery, Filter, FilterOp, Measure, RollupDef};

use crate::fields::resolve_field;

/// One rule as the API takes it:
/// `{"name": "rev", "event": "purchase", "measure": {"op": "sum", "property": "properties.value"},
///   "filters": [["properties.plan", "eq", "pro"]], "group_by": ["context.country"], "interval": "day"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationRule {
    pub name: String,
    /// Only events of this name (shorthand for a filter on `event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default = "MeasureSpec::count")]
    pub measure: MeasureSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// At most this many groups per bucket, the largest first (with `other`: the largest over the
    /// whole range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// With `limit`: keep the `limit` largest groups over the whole range and add one `$other`
    /// group per bucket for everything else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub other: bool,
    /// `"previous_period"`: add the value of the period just before the range (`previous`) and
    /// the change (`delta`, `delta_ratio`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<Compare>,
    /// Running totals over the buckets (count, sum; for unique_users the persons seen so far).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cumulative: bool,
}

/// What a trend is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    PreviousPeriod,
}

/// The text of the `$other` group.
pub const OTHER_GROUP: &str = "$other";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    /// count, unique_users, dau, wau, mau, sum, avg, min, max, p50, p90, p95, p99, percentile.
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// For `percentile`: between 0 and 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
}

impl MeasureSpec {
    fn count() -> Self {
        Self {
            op: "count".into(),
            property: None,
            percentile: None,
        }
    }
}

/// A filter: `["field", "op", value]` or `{"field": ..., "op": ..., "value": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FilterSpec {
    Triple(Vec<Value>),
    Object {
        field: String,
        op: String,
        #[serde(default)]
        value: Option<Value>,
    },
}

pub(crate) const MAX_GROUP_BY: usize = 5;
pub(crate) const MAX_FILTERS: usize = 50;
pub(crate) const MAX_NAME_LEN: usize = 100;

impl AggregationRule {
    /// Compiles the rule for `project` over `range`. `at` is the rule's path in the request.
    pub fn compile(
        &self,
        project: &ProjectId,
        range: &TimeRange,
        at: &str,
    ) -> Result<AggregateQuery, FieldError> {
        check_name(&self.name, at)?;
        let measure = self.compile_measure(&format!("{at}.measure"))?;
        let filters = compile_filters(self.event.as_deref(), &self.filters, at)?;
        if self.group_by.len() > MAX_GROUP_BY {
            return Err(FieldError::new(
                "too_many_groups",
                format!("{at}.group_by"),
                format!("at most {MAX_GROUP_BY} group-by fields"),
            ));
        }
        let group_by = self
            .group_by
            .iter()
            .enumerate()
            .map(|(i, g)| resolve_field(g, &format!("{at}.group_by[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if self.limit == Some(0) {
            return Err(FieldError::new(
                "invalid_limit",
                format!("{at}.limit"),
                "must be at least 1",
            ));
        }
        self.check_trend_options(&measure, at)?;
        Ok(AggregateQuery {
            project: project.clone(),
            from: range.from.timestamp_micros(),
            to: range.to.timestamp_micros(),
            timezone: range.timezone,
            filters,
            bucket: self.interval,
            group_by,
            measure,
            limit: self.limit,
        })
    }

    /// The rollup that keeps this rule live for `project`: its filters, groups and measure.
    /// Validates the rule; [`RollupDef::supported`] says whether a rollup can hold it.
    pub fn rollup_def(&self, project: &ProjectId) -> Result<RollupDef, FieldError> {
        let range = TimeRange {
            from: chrono::DateTime::UNIX_EPOCH,
            to: chrono::DateTime::UNIX_EPOCH + chrono::Duration::hours(1),
            timezone: chrono_tz::Tz::UTC,
        };
        Ok(RollupDef::of(&self.compile(project, &range, "rule")?))
    }

    /// For `dau`, `wau` and `mau`: the number of days of activity each value looks back on.
    pub fn active_days(&self) -> Option<u32> {
        match self.measure.op.as_str() {
            "dau" => Some(1),
            "wau" => Some(7),
            "mau" => Some(30),
            _ => None,
        }
    }

    fn check_trend_options(&self, measure: &Measure, at: &str) -> Result<(), FieldError> {
        let bad = |field: &str, msg: &str| {
            Err(FieldError::new(
                "invalid_option",
                format!("{at}.{field}"),
                msg.to_owned(),
            ))
        };
        if self.active_days().is_some() {
            if !matches!(self.interval, None | Some(Interval::Day)) {
                return bad(
                    "interval",
                    "dau, wau and mau are daily series: use \"day\" or no interval",
                );
            }
            if self.cumulative || self.other {
                return bad(
                    "measure.op",
                    "dau, wau and mau take neither `cumulative` nor `other`",
                );
            }
        }
        if self.cumulative {
            if self.interval.is_none() {
                return bad("cumulative", "a cumulative series needs an `interval`");
            }
            if !matches!(
                measure,
                Measure::Count | Measure::Sum(_) | Measure::UniquePersons
            ) {
                return bad(
                    "cumulative",
                    "cumulative works with count, sum and unique_users",
                );
            }
        }
        if self.other {
            if self.limit.is_none() || self.group_by.is_empty() {
                return bad("other", "`other` needs `group_by` and `limit`");
            }
            if self.group_by.len() > 1 && !matches!(measure, Measure::Count | Measure::Sum(_)) {
                return bad(
                    "other",
                    "with several group_by fields, `other` works with count and sum",
                );
            }
        }
        Ok(())
    }

    fn compile_measure(&self, at: &str) -> Result<Measure, FieldError> {
        let m = &self.measure;
        let property = || {
            let p = m.property.as_deref().ok_or_else(|| {
                FieldError::new(
                    "missing_property",
                    format!("{at}.property"),
                    format!("`{}` needs a numeric `property`", m.op),
                )
            })?;
            resolve_field(p, &format!("{at}.property"))
        };
        Ok(match m.op.as_str() {
            "count" => Measure::Count,
            // dau/wau/mau count distinct persons per day; the Aggregator widens the window.
            "unique_users" | "dau" | "wau" | "mau" => Measure::UniquePersons,
            "sum" => Measure::Sum(property()?),
            "avg" => Measure::Avg(property()?),
            "min" => Measure::Min(property()?),
            "max" => Measure::Max(property()?),
            "p50" => Measure::Percentile(property()?, 0.5),
            "p90" => Measure::Percentile(property()?, 0.9),
            "p95" => Measure::Percentile(property()?, 0.95),
            "p99" => Measure::Percentile(property()?, 0.99),
            "percentile" => {
                let p = m
                    .percentile
                    .filter(|p| (0.0..=1.0).contains(p))
                    .ok_or_else(|| {
                        FieldError::new(
                            "invalid_percentile",
                            format!("{at}.percentile"),
                            "must be a number between 0 and 1",
                        )
                    })?;
                Measure::Percentile(property()?, p)
            }
            other => {
                return Err(FieldError::new(
                    "unknown_measure",
                    format!("{at}.op"),
                    format!(
                        "unknown measure `{other}`: use count, unique_users, dau, wau, mau, sum, avg, min, max, p50, p90, p95, p99 or percentile"
                    ),
                ));
            }
        })
    }
}

/// Checks a result's name: 1 to [`MAX_NAME_LEN`] characters.
pub(crate) fn check_name(name: &str, at: &str) -> Result<(), FieldError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(FieldError::new(
            "invalid_name",
            format!("{at}.name"),
            format!("a rule name must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(())
}

/// An optional event name (a filter on `event`) and the filters at `{at}.filters`.
pub(crate) fn compile_filters(
    event: Option<&str>,
    filters: &[FilterSpec],
    at: &str,
) -> Result<Vec<Filter>, FieldError> {
    compile_filters_at(event, filters, &format!("{at}.filters"))
}

/// An optional event name (a filter on `event`) and the filters of the list at `path`.
pub(crate) fn compile_filters_at(
    event: Option<&str>,
    filters: &[FilterSpec],
    path: &str,
) -> Result<Vec<Filter>, FieldError> {
    if filters.len() > MAX_FILTERS {
        return Err(FieldError::new(
            "too_many_filters",
            path,
            format!("at most {MAX_FILTERS} filters"),
        ));
    }
    let mut out = Vec::with_capacity(filters.len() + 1);
    if let Some(event) = event {
        out.push(Filter {
            field: tally_store::FieldRef::Column("event".into()),
            op: FilterOp::Eq(Value::String(event.to_owned())),
        });
    }
    for (i, f) in filters.iter().enumerate() {
        out.push(compile_filter(f, &format!("{path}[{i}]"))?);
    }
    Ok(out)
}

pub(crate) fn compile_filter(f: &FilterSpec, at: &str) -> Result<Filter, FieldError> {
    let (field, op, value) = match f {
        FilterSpec::Triple(parts) => {
            let field = parts.first().and_then(Value::as_str);
            let op = parts.get(1).and_then(Value::as_str);
            match (field, op, parts.len()) {
                (Some(field), Some(op), 2 | 3) => (field, op, parts.get(2).cloned()),
                _ => {
                    return Err(FieldError::new(
                        "invalid_filter",
                        at,
                        "a filter is [\"field\", \"op\", value] (value omitted for `exists`)",
                    ));
                }
            }
        }
        FilterSpec::Object { field, op, value } => (field.as_str(), op.as_str(), value.clone()),
    };
    let field_ref = resolve_field(field, at)?;
    let need_value = |v: Option<Value>| {
        v.ok_or_else(|| FieldError::new("missing_value", at, format!("`{op}` needs a value")))
    };
    let scalar = |v: Value| match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => Ok(v),
        _ => Err(FieldError::new(
            "invalid_value",
            at,
            format!("`{op}` compares with a string, number, boolean or null"),
        )),
    };
    let op = match op {
        "eq" => FilterOp::Eq(scalar(need_value(value)?)?),
        "neq" => FilterOp::Neq(scalar(need_value(value)?)?),
        "in" => match need_value(value)? {
            Value::Array(items) => FilterOp::In(
                items
                    .into_iter()
                    .map(|v| match v {
                        Value::Null => Err(FieldError::new(
                            "invalid_value",
                            at,
                            "`in` takes strings, numbers or booleans",
                        )),
                        v => scalar(v),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                return Err(FieldError::new(
                    "invalid_value",
                    at,
                    "`in` takes an array of values",
                ));
            }
        },
        "contains" => match need_value(value)? {
            Value::String(s) => FilterOp::Contains(s),
            _ => {
                return Err(FieldError::new(
                    "invalid_value",
                    at,
                    "`contains` takes a string",
                ));
            }
        },
        "gt" | "lt" => {
            let v = need_value(value)?;
            if !(v.is_number() || v.is_string()) {
                return Err(FieldError::new(
                    "invalid_value",
                    at,
                    format!("`{op}` takes a number (or a timestamp string for time fields)"),
                ));
            }
            if op == "gt" {
                FilterOp::Gt(v)
            } else {
                FilterOp::Lt(v)
            }
        }
        "exists" => FilterOp::Exists,
        other => {
            return Err(FieldError::new(
                "unknown_operator",
                at,
                format!("unknown operator `{other}`: use eq, neq, in, contains, gt, lt or exists"),
            ));
        }
    };
    Ok(Filter {
        field: field_ref,
        op,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn range() -> TimeRange {
        TimeRange {
            from: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            to: chrono::DateTime::from_timestamp(86400, 0).unwrap(),
            timezone: chrono_tz::Tz::UTC,
        }
    }

    #[test]
    fn compiles_the_issue_example() {
        let r: AggregationRule = serde_json::from_value(json!({
            "name": "rev", "event": "purchase",
            "measure": {"op": "sum", "property": "properties.value"},
            "filters": [["properties.plan", "eq", "pro"], {"field": "browser", "op": "exists"}]
        }))
        .unwrap();
        let q = r
            .compile(&ProjectId::generate(), &range(), "rules[2]")
            .unwrap();
        assert_eq!(q.filters.len(), 3);
        assert!(matches!(q.measure, Measure::Sum(_)));
    }

    #[test]
    fn errors_name_the_field() {
        let r: AggregationRule = serde_json::from_value(json!({
            "name": "x", "measure": {"op": "sum"}
        }))
        .unwrap();
        let e = r
            .compile(&ProjectId::generate(), &range(), "rules[1]")
            .unwrap_err();
        assert_eq!(e.field, "rules[1].measure.property");
        let r: AggregationRule = serde_json::from_value(json!({
            "name": "x", "filters": [["event", "like", "a"]]
        }))
        .unwrap();
        let e = r
            .compile(&ProjectId::generate(), &range(), "rules[0]")
            .unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.field.as_str()),
            ("unknown_operator", "rules[0].filters[0]")
        );
    }
}
