//! The `EventProcessor`: from an [`AnalyticsEvent`] as received to the [`EventRecord`] stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tally_core::{
    AnalyticsEvent, ConsentMode, EventRecord, EventSchema, FieldError, IdentityOp, ProjectId,
};

use crate::enrich::{UserAgentParser, Utm, classify, split};
use crate::pii::{PiiPolicy, PiiScrubber, Scrubbed};
use crate::privacy::{IpMode, anonymize_ip};
use crate::sessions::SessionTracker;

/// Processing settings shared by every project.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub ip_mode: IpMode,
    /// How far in the future (after clock-skew correction) an event's time may be.
    pub max_future: Duration,
    /// Inactivity that ends a session.
    pub session_timeout: Duration,
    /// Persons whose open session is remembered at once.
    pub max_tracked_persons: usize,
    /// What personal data is dropped, masked or hashed (see [`crate::pii`]).
    pub pii: PiiPolicy,
    /// The secret that keys PII hashes; the server and `tally import` use the catalog's
    /// (`pii_salt`), so equal values hash equal everywhere.
    pub pii_salt: Vec<u8>,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            ip_mode: IpMode::Truncate,
            max_future: Duration::from_secs(24 * 3600),
            session_timeout: Duration::from_secs(30 * 60),
            max_tracked_persons: 1_000_000,
            pii: PiiPolicy::default(),
            pii_salt: Vec::new(),
        }
    }
}

/// What the processor must know of a project: its event schemas and whether they are strict.
#[derive(Debug, Clone, Default)]
pub struct ProjectSchemas {
    pub schemas: HashMap<String, EventSchema>,
    /// Events without a registered schema are rejected.
    pub strict: bool,
    /// What happens to events sent without consent.
    pub consent: ConsentMode,
}

/// The earliest event time accepted: 2000-01-01.
const MIN_TIMESTAMP_US: i64 = 946_684_800_000_000;

/// Validates, normalizes, enriches and anonymizes events. Share one behind an `Arc`.
#[derive(Debug)]
pub struct EventProcessor {
    config: ProcessorConfig,
    user_agents: Arc<UserAgentParser>,
    sessions: SessionTracker,
    pii: PiiScrubber,
}

impl EventProcessor {
    pub fn new(config: ProcessorConfig) -> Self {
        Self::with_user_agent_parser(config, Arc::new(UserAgentParser::new()))
    }

    pub fn with_user_agent_parser(
        config: ProcessorConfig,
        user_agents: Arc<UserAgentParser>,
    ) -> Self {
        let sessions = SessionTracker::new(config.session_timeout, config.max_tracked_persons);
        let pii = PiiScrubber::new(config.pii.clone(), config.ip_mode, &config.pii_salt);
        Self {
            config,
            user_agents,
            sessions,
            pii,
        }
    }

    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    /// The PII rules applied to events, also for person and group properties.
    pub fn pii(&self) -> &PiiScrubber {
        &self.pii
    }

    /// Forgets what the processor remembers of `ids` (their open sessions), after an erasure.
    pub fn forget_person(&self, project: &ProjectId, ids: &[String]) {
        self.sessions.forget(project, ids);
    }

    /// Scrubs the properties that identity calls set on persons and groups.
    pub fn scrub_identity(&self, ops: &mut [IdentityOp]) {
        for op in ops {
            match op {
                IdentityOp::SetProperties { set, set_once, .. } => {
                    self.pii.scrub_map(set);
                    self.pii.scrub_map(set_once);
                }
                IdentityOp::Group { set, .. } => self.pii.scrub_map(set),
                IdentityOp::Merge { .. } => {}
            }
        }
    }

    /// Turns one event into the record to store (`None`: acknowledged and not stored, as an
    /// event without consent in a project that drops those), or says which field makes it
    /// unacceptable. A record without `user_id` and `anonymous_id` is personless (sent without
    /// consent): identity changes that came with it must not be applied.
    pub fn process(
        &self,
        project: &ProjectId,
        schemas: &ProjectSchemas,
        ev: AnalyticsEvent,
        received_at: DateTime<Utc>,
    ) -> Result<Option<EventRecord>, FieldError> {
        let AnalyticsEvent {
            event,
            category,
            action,
            mut label,
            value,
            user_id,
            anonymous_id,
            timestamp,
            sent_at,
            message_id,
            mut properties,
            mut context,
        } = ev;
        // The origin's shape has no name: its action names it (as GA4 migrated them).
        let name = match event.or_else(|| action.clone()) {
            Some(n) => n,
            None => {
                return Err(FieldError::new(
                    "missing_field",
                    "event",
                    "an event needs a name",
                ));
            }
        };
        let received_us = received_at.timestamp_micros();
        let timestamp_us = self.event_time(timestamp, sent_at, received_at)?;

        match schemas.schemas.get(&name) {
            Some(schema) => {
                if let Some(e) = schema.validate(&properties).into_iter().next() {
                    return Err(e);
                }
            }
            None if schemas.strict => {
                return Err(FieldError::new(
                    "undeclared_event",
                    "event",
                    format!("`{name}` has no registered schema and the project is strict"),
                ));
            }
            None => {}
        }

        // Personal data goes before anything is derived from the text (path, UTM, referrer).
        let pii = &self.pii;
        pii.scrub_map(&mut properties);
        pii.scrub_map(&mut context.extra);
        label = pii.scrub_opt(label);
        let page = &mut context.page;
        for url in [&mut page.url, &mut page.referrer] {
            *url = url.take().and_then(|u| match pii.scrub_url(&u) {
                Scrubbed::Unchanged => Some(u),
                Scrubbed::Changed(t) => Some(t),
                Scrubbed::Drop => None,
            });
        }
        for text in [&mut page.path, &mut page.title] {
            *text = pii.scrub_opt(text.take());
        }
        let campaign = &mut context.campaign;
        for text in [
            &mut campaign.source,
            &mut campaign.medium,
            &mut campaign.name,
            &mut campaign.term,
            &mut campaign.content,
        ] {
            *text = pii.scrub_opt(text.take());
        }

        // Without consent: nothing that could single the person out is kept.
        let (user_id, anonymous_id, anonymous_person) =
            if tally_core::without_consent(&context.extra) {
                if schemas.consent == ConsentMode::Drop {
                    return Ok(None);
                }
                let anonymous = format!("$anon:{}", uuid::Uuid::new_v4().simple());
                (None, None, Some(anonymous))
            } else {
                (user_id, anonymous_id, None)
            };
        let personless = anonymous_person.is_some();
        let person_id = match anonymous_person
            .as_deref()
            .or(user_id.as_deref())
            .or(anonymous_id.as_deref())
        {
            Some(p) => p.to_owned(),
            None => {
                return Err(FieldError::new(
                    "missing_field",
                    "user_id",
                    "an event needs `user_id` or `anonymous_id`",
                ));
            }
        };
        let session_id = self.sessions.assign(project, &person_id, timestamp_us);

        let ua = context
            .user_agent
            .as_deref()
            .map(|u| self.user_agents.parse(u));
        let url_parts = context.page.url.as_deref().and_then(split);
        let path = context
            .page
            .path
            .clone()
            .or_else(|| url_parts.as_ref().map(|p| p.path.clone()));
        let host = url_parts.as_ref().and_then(|p| p.host.clone());
        let explicit = Utm {
            source: context.campaign.source.clone(),
            medium: context.campaign.medium.clone(),
            campaign: context.campaign.name.clone(),
            term: context.campaign.term.clone(),
            content: context.campaign.content.clone(),
            ..Utm::default()
        };
        let utm = context
            .page
            .url
            .as_deref()
            .map(Utm::from_url)
            .unwrap_or_default()
            .merge_over(explicit);
        let referrer = classify(
            context.page.referrer.as_deref(),
            context.page.url.as_deref(),
            &utm,
        );

        Ok(Some(EventRecord {
            timestamp: timestamp_us,
            received_at: received_us,
            event: name,
            category,
            action,
            label,
            value,
            user_id,
            anonymous_id,
            person_id,
            session_id,
            message_id: message_id.as_deref().map(tally_core::ids::message_id_bytes),
            properties: json_text(properties),
            ip: context
                .ip
                .as_deref()
                .filter(|_| !personless)
                .and_then(|ip| anonymize_ip(ip, self.config.ip_mode)),
            locale: context.locale,
            url: context.page.url,
            host,
            path,
            title: context.page.title,
            referrer: context.page.referrer,
            referrer_host: referrer.host,
            referrer_channel: Some(referrer.channel.as_str().to_owned()),
            utm_source: utm.source,
            utm_medium: utm.medium,
            utm_campaign: utm.campaign,
            utm_term: utm.term,
            utm_content: utm.content,
            browser: ua.as_ref().and_then(|u| u.browser.clone()),
            browser_version: ua.as_ref().and_then(|u| u.browser_version.clone()),
            os: ua.as_ref().and_then(|u| u.os.clone()),
            os_version: ua.as_ref().and_then(|u| u.os_version.clone()),
            device_type: ua.as_ref().map(|u| u.device_type.as_str().to_owned()),
            country: context.country.map(|c| c.to_uppercase()),
            region: context.region,
            city: context.city,
            library: context.library,
            context_extra: json_text(context.extra),
        }))
    }

    /// The event's time: its `timestamp` (default: received), moved by the client's clock skew
    /// (`received_at - sent_at`) when `sent_at` is given, as Segment does.
    fn event_time(
        &self,
        timestamp: Option<DateTime<Utc>>,
        sent_at: Option<DateTime<Utc>>,
        received_at: DateTime<Utc>,
    ) -> Result<i64, FieldError> {
        let ts = match (timestamp, sent_at) {
            (Some(ts), Some(sent)) => ts + (received_at - sent),
            (Some(ts), None) => ts,
            (None, _) => received_at,
        };
        let us = ts.timestamp_micros();
        let latest = received_at.timestamp_micros() + self.config.max_future.as_micros() as i64;
        if us > latest {
            return Err(FieldError::new(
                "timestamp_out_of_range",
                "timestamp",
                "is more than 24 hours in the future (after clock-skew correction)",
            ));
        }
        if us < MIN_TIMESTAMP_US {
            return Err(FieldError::new(
                "timestamp_out_of_range",
                "timestamp",
                "is before 2000-01-01",
            ));
        }
        Ok(us)
    }
}

fn json_text(m: serde_json::Map<String, Value>) -> Option<String> {
    if m.is_empty() {
        None
    } else {
        serde_json::to_string(&Value::Object(m)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::{EventContext, Page};

    fn processor() -> EventProcessor {
        EventProcessor::new(ProcessorConfig::default())
    }

    fn at(s: &str) -> DateTime<Utc> {
        tally_core::time::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn corrects_clock_skew_and_enriches() {
        let p = processor();
        let ev = AnalyticsEvent {
            event: Some("pageview".into()),
            anonymous_id: Some("a1".into()),
            timestamp: Some(at("2026-11-24T09:00:00Z")),
            sent_at: Some(at("2026-11-24T09:05:00Z")),
            context: EventContext {
                user_agent: Some(
                    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into(),
                ),
                ip: Some("198.51.100.23".into()),
                page: Page {
                    url: Some(
                        "https://shop.example/pricing?utm_source=newsletter&utm_medium=email"
                            .into(),
                    ),
                    referrer: Some("https://www.google.com/".into()),
                    ..Page::default()
                },
                ..EventContext::default()
            },
            ..AnalyticsEvent::default()
        };
        let r = p
            .process(
                &ProjectId::generate(),
                &ProjectSchemas::default(),
                ev,
                at("2026-11-24T10:00:00Z"),
            )
            .unwrap()
            .unwrap();
        // The client's clock is 55 minutes behind.
        assert_eq!(r.timestamp, at("2026-11-24T09:55:00Z").timestamp_micros());
        assert_eq!(r.browser.as_deref(), Some("Firefox"));
        assert_eq!(r.path.as_deref(), Some("/pricing"));
        assert_eq!(r.host.as_deref(), Some("shop.example"));
        assert_eq!(r.utm_source.as_deref(), Some("newsletter"));
        assert_eq!(r.referrer_host.as_deref(), Some("google.com"));
        assert_eq!(r.ip.as_deref(), Some("198.51.100.0"));
        assert_eq!(r.person_id, "a1");
    }

    #[test]
    fn schemas_and_strictness() {
        let p = processor();
        let schema: EventSchema = serde_json::from_value(serde_json::json!({
            "event": "purchase", "fields": [{"name": "amount", "type": "float", "required": true}]
        }))
        .unwrap();
        let mut s = ProjectSchemas::default();
        s.schemas.insert("purchase".into(), schema);
        let ev = |name: &str| AnalyticsEvent {
            event: Some(name.into()),
            user_id: Some("u".into()),
            ..AnalyticsEvent::default()
        };
        let now = Utc::now();
        let e = p
            .process(&ProjectId::generate(), &s, ev("purchase"), now)
            .unwrap_err();
        assert_eq!(e.field, "properties.amount");
        assert!(
            p.process(&ProjectId::generate(), &s, ev("other"), now)
                .is_ok()
        );
        s.strict = true;
        let e = p
            .process(&ProjectId::generate(), &s, ev("other"), now)
            .unwrap_err();
        assert_eq!(e.code, "undeclared_event");
    }

    #[test]
    fn events_without_consent_are_personless_or_dropped() {
        let p = processor();
        let ev = || AnalyticsEvent {
            event: Some("pageview".into()),
            user_id: Some("u1".into()),
            anonymous_id: Some("a1".into()),
            context: EventContext {
                ip: Some("203.0.113.77".into()),
                extra: serde_json::json!({"consent": false})
                    .as_object()
                    .cloned()
                    .unwrap(),
                ..EventContext::default()
            },
            ..AnalyticsEvent::default()
        };
        let mut s = ProjectSchemas::default();
        let now = Utc::now();
        let a = p
            .process(&ProjectId::generate(), &s, ev(), now)
            .unwrap()
            .unwrap();
        let b = p
            .process(&ProjectId::generate(), &s, ev(), now)
            .unwrap()
            .unwrap();
        assert_eq!((a.user_id, a.anonymous_id, a.ip), (None, None, None));
        assert!(a.person_id.starts_with("$anon:"));
        assert_ne!(
            a.person_id, b.person_id,
            "each event is its own anonymous visitor"
        );
        s.consent = ConsentMode::Drop;
        assert_eq!(
            p.process(&ProjectId::generate(), &s, ev(), now).unwrap(),
            None
        );
    }

    #[test]
    fn refuses_far_future() {
        let p = processor();
        let now = at("2026-11-24T10:00:00Z");
        let ev = AnalyticsEvent {
            event: Some("e".into()),
            user_id: Some("u".into()),
            timestamp: Some(at("2026-11-27T10:00:00Z")),
            ..AnalyticsEvent::default()
        };
        let e = p
            .process(&ProjectId::generate(), &ProjectSchemas::default(), ev, now)
            .unwrap_err();
        assert_eq!(e.code, "timestamp_out_of_range");
    }
}
