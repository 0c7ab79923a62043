//! The event as it is stored: validated, normalized, enriched and stripped of what must not be kept.

use serde::{Deserialize, Serialize};

/// One stored event: a row of the columnar store. Times are microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub timestamp: i64,
    pub received_at: i64,
    pub event: String,
    pub category: Option<String>,
    pub action: Option<String>,
    pub label: Option<String>,
    pub value: Option<f64>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// `user_id`, else `anonymous_id` (for an event sent without consent, `$anon:` and a random
    /// id of its own): whom unique counts count.
    pub person_id: String,
    pub session_id: i64,
    pub message_id: Option<[u8; 16]>,
    /// The properties as a JSON object text, `None` when there were none.
    pub properties: Option<String>,
    /// The anonymized IP (see the processor's IP mode); never the raw one by default.
    pub ip: Option<String>,
    pub locale: Option<String>,
    pub url: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub title: Option<String>,
    pub referrer: Option<String>,
    pub referrer_host: Option<String>,
    pub referrer_channel: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub device_type: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub library: Option<String>,
    /// Other context keys as a JSON object text.
    pub context_extra: Option<String>,
}

impl EventRecord {
    /// Sent without consent and counted anonymously: no user or anonymous id, a `person_id` of
    /// its own (`$anon:…`).
    pub fn is_personless(&self) -> bool {
        self.user_id.is_none() && self.anonymous_id.is_none()
    }
}
