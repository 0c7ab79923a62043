//! What a report is: a title, sections (each a query shown as a chart, a table or a number), a
//! relative time range in a time zone, an optional schedule, and where to deliver it.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::FieldError;
pub use tally_core::time::{RelativeRange, range_spec};
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
