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
