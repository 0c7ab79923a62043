//! Tally's own event shape, as `POST /v1/events` takes it.
//!
//! Top-level keys are checked strictly (a misspelt `userid` would silently lose the person);
//! `snake_case` and the `camelCase` spellings Segment clients use are both accepted.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tally_core::time::parse_rfc3339;
use tally_core::{AnalyticsEvent, Campaign, EventContext, FieldError, Page};

/// Limits on one event's fields. Documented in `docs/LIMITS.md`.
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_ID_CHARS: usize = 255;
pub const MAX_PROPERTIES: usize = 1_000;
pub const MAX_DEPTH: usize = 10;
pub const MAX_KEY_CHARS: usize = 200;

/// Parses one event of a request. `max_bytes` is the limit on its JSON.
pub fn parse_event(raw: &RawValue, max_bytes: usize) -> Result<AnalyticsEvent, FieldError> {
    event_from_value(parse_json(raw, max_bytes, "event")?)
}

/// The JSON of one item of a request (`what`: "event", "message"), within `max_bytes`
/// (else `{what}_too_large`).
pub(crate) fn parse_json(
    raw: &RawValue,
    max_bytes: usize,
    what: &str,
) -> Result<Value, FieldError> {
    if raw.get().len() > max_bytes {
        return Err(FieldError::new(
            &format!("{what}_too_large"),
            "",
            format!(
                "the {what}'s JSON is {} bytes; at most {max_bytes}",
                raw.get().len()
            ),
        ));
    }
    serde_json::from_str(raw.get())
        .map_err(|e| FieldError::new("malformed_json", "", e.to_string()))
}

/// Builds an event from its JSON object.
pub fn event_from_value(value: Value) -> Result<AnalyticsEvent, FieldError> {
    let Value::Object(obj) = value else {
        return Err(FieldError::new(
            "wrong_type",
            "",
            "an event must be a JSON object",
        ));
    };
    let mut ev = AnalyticsEvent::default();
    for (key, v) in obj {
        match key.as_str() {
            "event" => ev.event = name(v, "event")?,
            "category" => ev.category = name(v, "category")?,
            "action" => ev.action = name(v, "action")?,
            "label" => ev.label = opt_string(v, "label", MAX_ID_CHARS)?,
            "value" => ev.value = number(v, "value")?,
            "user_id" | "userId" => ev.user_id = id(v, &key)?,
            "anonymous_id" | "anonymousId" => ev.anonymous_id = id(v, &key)?,
            "timestamp" => ev.timestamp = timestamp(v, "timestamp")?,
            "sent_at" | "sentAt" => ev.sent_at = timestamp(v, &key)?,
            "message_id" | "messageId" => ev.message_id = id(v, &key)?,
            "properties" => ev.properties = properties(v)?,
            "context" => ev.context = context(v)?,
            _ => {
                return Err(FieldError::new(
                    "unknown_field",
                    key.as_str(),
                    "is not an event field (event, category, action, label, value, user_id, anonymous_id, timestamp, sent_at, message_id, properties, context)",
                ));
            }
        }
    }
    if ev.event.is_none() && (ev.category.is_none() || ev.action.is_none()) {
        let field = if ev.category.is_some() {
            "action"
        } else if ev.action.is_some() {
            "category"
        } else {
            "event"
        };
        return Err(FieldError::new(
            "missing_field",
            field,
            "an event needs `event`, or `category` and `action`",
        ));
    }
    if ev.user_id.is_none() && ev.anonymous_id.is_none() {
        return Err(FieldError::new(
            "missing_field",
            "user_id",
            "an event needs `user_id` or `anonymous_id`",
        ));
    }
    Ok(ev)
}

pub(crate) fn wrong_type(field: &str, expected: &str) -> FieldError {
    FieldError::new("wrong_type", field, format!("must be {expected}"))
}

pub(crate) fn opt_string(
    v: Value,
    field: &str,
    max_chars: usize,
) -> Result<Option<String>, FieldError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            if s.chars().count() > max_chars {
                return Err(FieldError::new(
                    "too_long",
                    field,
                    format!("at most {max_chars} characters"),
                ));
            }
            Ok(Some(s))
        }
        _ => Err(wrong_type(field, "a string")),
    }
}

pub(crate) fn name(v: Value, field: &str) -> Result<Option<String>, FieldError> {
    let s = opt_string(v, field, MAX_NAME_CHARS)?;
    match s {
        Some(s) if s.trim().is_empty() => Err(FieldError::new("empty", field, "must not be empty")),
        Some(s) if s.chars().any(char::is_control) => Err(FieldError::new(
            "invalid_characters",
            field,
            "must not contain control characters",
        )),
        s => Ok(s),
    }
}

/// Ids may be strings or integers (some clients send numeric user ids); they are stored as text.
pub(crate) fn id(v: Value, field: &str) -> Result<Option<String>, FieldError> {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Value::String(s) if s.is_empty() => Ok(None),
        other => opt_string(other, field, MAX_ID_CHARS).map_err(|e| {
            if e.code == "wrong_type" {
                wrong_type(field, "a string or an integer")
            } else {
                e
            }
        }),
    }
}

pub(crate) fn number(v: Value, field: &str) -> Result<Option<f64>, FieldError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| wrong_type(field, "a finite number")),
        _ => Err(wrong_type(field, "a number")),
    }
}

pub(crate) fn timestamp(v: Value, field: &str) -> Result<Option<DateTime<Utc>>, FieldError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => parse_rfc3339(&s).map(Some).ok_or_else(|| {
            FieldError::new(
                "invalid_timestamp",
                field,
                format!(
                    "`{}` is not an RFC 3339 timestamp (e.g. 2026-11-24T10:00:00Z)",
                    truncate(&s, 40)
                ),
            )
        }),
        _ => Err(wrong_type(field, "an RFC 3339 timestamp string")),
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

pub(crate) fn properties(v: Value) -> Result<Map<String, Value>, FieldError> {
    object(v, "properties")
}

/// A JSON object of at most [`MAX_PROPERTIES`] keys, nested at most [`MAX_DEPTH`] levels (null is
/// an empty one).
pub(crate) fn object(v: Value, field: &str) -> Result<Map<String, Value>, FieldError> {
    match v {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => {
            if m.len() > MAX_PROPERTIES {
                return Err(FieldError::new(
                    "too_many_properties",
                    field,
                    format!("{} properties; at most {MAX_PROPERTIES}", m.len()),
                ));
            }
            check_nesting(&m, field, 1)?;
            Ok(m)
        }
        _ => Err(wrong_type(field, "an object")),
    }
}

pub(crate) fn check_nesting(
    m: &Map<String, Value>,
    at: &str,
    depth: usize,
) -> Result<(), FieldError> {
    if depth > MAX_DEPTH {
        return Err(FieldError::new(
            "too_deep",
            at,
            format!("objects nest at most {MAX_DEPTH} levels deep"),
        ));
    }
    for (k, v) in m {
        if k.chars().count() > MAX_KEY_CHARS || k.is_empty() {
            return Err(FieldError::new(
                "invalid_key",
                format!("{at}.{}", truncate(k, 40)),
                format!("keys are 1 to {MAX_KEY_CHARS} characters"),
            ));
        }
        check_value_nesting(v, &format!("{at}.{k}"), depth)?;
    }
    Ok(())
}

fn check_value_nesting(v: &Value, at: &str, depth: usize) -> Result<(), FieldError> {
    match v {
        Value::Object(inner) => check_nesting(inner, at, depth + 1),
        Value::Array(items) => {
            if depth + 1 > MAX_DEPTH {
                return Err(FieldError::new(
                    "too_deep",
                    at,
                    format!("objects nest at most {MAX_DEPTH} levels deep"),
                ));
            }
            items
                .iter()
                .try_for_each(|i| check_value_nesting(i, at, depth + 1))
        }
        _ => Ok(()),
    }
}

pub(crate) fn context(v: Value) -> Result<EventContext, FieldError> {
    let m = match v {
        Value::Null => return Ok(EventContext::default()),
        Value::Object(m) => m,
        _ => return Err(wrong_type("context", "an object")),
    };
    check_nesting(&m, "context", 1)?;
    let mut c = EventContext::default();
    let s = |v: Value, f: &str| opt_string(v, &format!("context.{f}"), 2048);
    for (k, v) in m {
        match k.as_str() {
            "user_agent" | "userAgent" => c.user_agent = s(v, &k)?,
            "ip" => c.ip = s(v, "ip")?,
            "locale" => c.locale = s(v, "locale")?,
            "timezone" => c.timezone = s(v, "timezone")?,
            "country" => c.country = s(v, "country")?,
            "region" => c.region = s(v, "region")?,
            "city" => c.city = s(v, "city")?,
            "location" => {
                let Value::Object(loc) = v else {
                    return Err(wrong_type("context.location", "an object"));
                };
                for (lk, lv) in loc {
                    match lk.as_str() {
                        "country" => c.country = s(lv, "location.country")?,
                        "region" => c.region = s(lv, "location.region")?,
                        "city" => c.city = s(lv, "location.city")?,
                        _ => {}
                    }
                }
            }
            "library" => {
                c.library = match v {
                    Value::Object(lib) => {
                        let name = lib.get("name").and_then(Value::as_str).unwrap_or("");
                        let version = lib.get("version").and_then(Value::as_str).unwrap_or("");
                        Some(format!("{name} {version}").trim().to_owned())
                            .filter(|s| !s.is_empty())
                    }
                    other => s(other, "library")?,
                }
            }
            "page" => c.page = page(v)?,
            "campaign" => c.campaign = campaign(v)?,
            _ => {
                c.extra.insert(k, v);
            }
        }
    }
    Ok(c)
}

fn page(v: Value) -> Result<Page, FieldError> {
    let Value::Object(m) = v else {
        return Err(wrong_type("context.page", "an object"));
    };
    let mut p = Page::default();
    for (k, v) in m {
        let f = format!("context.page.{k}");
        match k.as_str() {
            "url" => p.url = opt_string(v, &f, 4096)?,
            "path" => p.path = opt_string(v, &f, 4096)?,
            "referrer" => p.referrer = opt_string(v, &f, 4096)?,
            "title" => p.title = opt_string(v, &f, 1024)?,
            _ => {}
        }
    }
    Ok(p)
}

fn campaign(v: Value) -> Result<Campaign, FieldError> {
    let Value::Object(m) = v else {
        return Err(wrong_type("context.campaign", "an object"));
    };
    let mut c = Campaign::default();
    for (k, v) in m {
        let f = format!("context.campaign.{k}");
        let val = opt_string(v, &f, 1024)?;
        match k.as_str() {
            "source" | "utm_source" => c.source = val,
            "medium" | "utm_medium" => c.medium = val,
            "name" | "campaign" | "utm_campaign" => c.name = val,
            "term" | "utm_term" => c.term = val,
            "content" | "utm_content" => c.content = val,
            _ => {}
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<AnalyticsEvent, FieldError> {
        let raw = serde_json::value::to_raw_value(&v).unwrap();
        parse_event(&raw, 32 << 10)
    }

    #[test]
    fn the_origin_shape() {
        let e = parse(json!({"category": "video", "action": "play", "label": "intro", "value": 30, "anonymous_id": "a"})).unwrap();
        assert_eq!(
            (e.category.as_deref(), e.action.as_deref(), e.value),
            (Some("video"), Some("play"), Some(30.0))
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({"event": "a"}), "missing_field", "user_id"),
            (json!({"user_id": "u"}), "missing_field", "event"),
            (
                json!({"event": "a", "userid": "u"}),
                "unknown_field",
                "userid",
            ),
            (json!({"event": 5, "user_id": "u"}), "wrong_type", "event"),
            (
                json!({"event": "a", "user_id": "u", "timestamp": "yesterday"}),
                "invalid_timestamp",
                "timestamp",
            ),
            (
                json!({"event": "a", "user_id": "u", "value": "3"}),
                "wrong_type",
                "value",
            ),
            (
                json!({"event": "a", "user_id": "u", "properties": []}),
                "wrong_type",
                "properties",
            ),
            (json!({"event": "", "user_id": "u"}), "empty", "event"),
            (
                json!({"event": "a", "user_id": "u", "context": {"page": {"url": 3}}}),
                "wrong_type",
                "context.page.url",
            ),
            (json!("str"), "wrong_type", ""),
        ];
        for (v, code, field) in cases {
            let e = parse(v.clone()).unwrap_err();
            assert_eq!((e.code.as_str(), e.field.as_str()), (code, field), "{v}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut v = json!(1);
        for _ in 0..12 {
            v = json!({"a": v});
        }
        let e = parse(json!({"event": "a", "user_id": "u", "properties": v})).unwrap_err();
        assert_eq!(e.code, "too_deep");
    }

    #[test]
    fn too_large() {
        let big = "x".repeat(40_000);
        let e = parse(json!({"event": "a", "user_id": "u", "properties": {"b": big}})).unwrap_err();
        assert_eq!(e.code, "event_too_large");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                let _ = event_from_value(v);
            }
        }
    }
}
