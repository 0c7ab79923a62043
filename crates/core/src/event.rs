//! The event as a client sends it, after decoding and before processing.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// One usage event: either named (`event`) or in the origin's shape (`category`, `action`,
/// optional `label` and numeric `value`), with the person it belongs to and its context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnalyticsEvent {
    pub event: Option<String>,
    pub category: Option<String>,
    pub action: Option<String>,
    pub label: Option<String>,
    pub value: Option<f64>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub timestamp: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub message_id: Option<String>,
    pub properties: Map<String, Value>,
    pub context: EventContext,
}

/// What the client knows about where the event happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventContext {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub page: Page,
    pub campaign: Campaign,
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub library: Option<String>,
    /// Every other context key, kept as JSON so it can still be filtered on.
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub url: Option<String>,
    pub path: Option<String>,
    pub referrer: Option<String>,
    pub title: Option<String>,
}

/// Campaign (UTM) parameters a client sends explicitly; they win over those found in the URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Campaign {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub name: Option<String>,
    pub term: Option<String>,
    pub content: Option<String>,
}

/// What a project does with events sent without consent (`context.consent` false): count them
/// anonymously (no ids, no IP, no person; each event is its own anonymous visitor), or drop them
/// (acknowledged, never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentMode {
    #[default]
    Anonymous,
    Drop,
}

impl ConsentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Drop => "drop",
        }
    }
}

impl std::str::FromStr for ConsentMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "anonymous" => Ok(Self::Anonymous),
            "drop" => Ok(Self::Drop),
            other => Err(format!(
                "unknown consent mode `{other}`: use anonymous or drop"
            )),
        }
    }
}

/// Whether an event's context says its sender did not consent to analytics:
/// `"consent": false` or `"denied"`, or Segment's
/// `"consent": {"categoryPreferences": {"analytics": false}}` (any case of `analytics`).
pub fn without_consent(context_extra: &Map<String, Value>) -> bool {
    match context_extra.get("consent") {
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("denied") || s == "false",
        Some(Value::Object(o)) => o
            .get("categoryPreferences")
            .and_then(Value::as_object)
            .is_some_and(|prefs| {
                prefs
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("analytics") && *v == Value::Bool(false))
            }),
        _ => false,
    }
}

#[cfg(test)]
mod consent_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn consent_flags() {
        let m = |v: Value| v.as_object().cloned().unwrap();
        assert!(without_consent(&m(json!({"consent": false}))));
        assert!(without_consent(&m(json!({"consent": "DENIED"}))));
        assert!(without_consent(&m(
            json!({"consent": {"categoryPreferences": {"Analytics": false, "ads": true}}})
        )));
        assert!(!without_consent(&m(json!({"consent": true}))));
        assert!(!without_consent(&m(
            json!({"consent": {"categoryPreferences": {"analytics": true}}})
        )));
        assert!(!without_consent(&m(json!({}))));
        assert_eq!("drop".parse::<ConsentMode>(), Ok(ConsentMode::Drop));
        assert!("never".parse::<ConsentMode>().is_err());
    }
}
