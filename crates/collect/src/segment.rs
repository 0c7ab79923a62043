//! Segment's HTTP Tracking API message shapes: `track`, `page`, `screen`, `identify`, `group`,
//! `alias`, one at a time or in a `batch`.
//!
//! Each message becomes an event (so every call is counted and can be queried) and, for the
//! identity calls, the [`IdentityOp`]s it asks for:
//!
//! | call | event name | identity |
//! |---|---|---|
//! | `track` | its `event` (or, Tally's extension, the origin's `category`/`action`/`label`/`value`, named by `action`) | — |
//! | `page` | `pageview` (properties `url`, `path`, `referrer`, `title` fill `context.page`) | — |
//! | `screen` | `screen` (its `name` as property `name`) | — |
//! | `identify` | `$identify` | `traits` set on the person (not copied into the event) |
//! | `group` | `$group` (`$group_type`, `$group_key`) | `traits` set on group `group`/`groupId`; the person's `$groups.group` set to `groupId` |
//! | `alias` | `$alias` (`previous_id`) | `previousId` merged into `userId` |
//!
//! Any message that carries both `anonymousId` and `userId` also merges the anonymous id into the
//! user (an implicit merge; see [`IdentityOp::Merge`]). Unknown keys are ignored, as Segment does
//! (`integrations`, `originalTimestamp`, `_metadata`, ...).

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tally_core::{AnalyticsEvent, FieldError, IdentityOp};

use crate::Message;

use crate::native::{
    MAX_ID_CHARS, context, id, name, number, object, opt_string, parse_json, properties, timestamp,
    wrong_type,
};

/// Segment's limit on one message's JSON.
pub const MAX_MESSAGE_BYTES: usize = 32 << 10;
/// Segment's limit on one request (a batch).
pub const MAX_BATCH_BYTES: usize = 500 << 10;
/// The group type that Segment's `group` calls (which have no type) are stored under.
pub const SEGMENT_GROUP_TYPE: &str = "group";

/// The call a message makes, when the endpoint does not say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Track,
    Page,
    Screen,
    Identify,
    Group,
    Alias,
}

impl Call {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "track" => Self::Track,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "identify" => Self::Identify,
            "group" => Self::Group,
            "alias" => Self::Alias,
            _ => return None,
        })
    }
}

/// What a batch's envelope gives every message: `sentAt` and a `context` whose keys a message's
/// own context overrides.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub sent_at: Option<Value>,
    pub context: Option<Map<String, Value>>,
}

/// A request body of the Segment API, split: the write key it carries (if any), the envelope and
/// the raw messages (one for the single-call endpoints).
#[derive(Debug)]
pub struct SegmentBody<'a> {
    pub write_key: Option<String>,
    pub envelope: Envelope,
    pub messages: Vec<&'a RawValue>,
}

/// Splits a decoded body. `batch` is true for `/v1/batch` (`{"batch": [...], ...}`).
pub fn split_body(json: &[u8], batch: bool) -> Result<SegmentBody<'_>, FieldError> {
    let malformed = |e: serde_json::Error| FieldError::new("malformed_json", "body", e.to_string());
    if !batch {
        let raw: &RawValue = serde_json::from_slice(json).map_err(malformed)?;
        #[derive(serde::Deserialize)]
        struct Key {
            #[serde(rename = "writeKey")]
            write_key: Option<Value>,
        }
        let key: Key = serde_json::from_str(raw.get()).map_err(malformed)?;
        return Ok(SegmentBody {
            write_key: key.write_key.and_then(|k| k.as_str().map(str::to_owned)),
            envelope: Envelope::default(),
            messages: vec![raw],
        });
    }
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        batch: Option<Vec<&'a RawValue>>,
        #[serde(rename = "writeKey")]
        write_key: Option<Value>,
        #[serde(rename = "sentAt")]
        sent_at: Option<Value>,
        context: Option<Value>,
    }
    let b: Batch = serde_json::from_slice(json).map_err(malformed)?;
    let Some(messages) = b.batch else {
        return Err(FieldError::new(
            "missing_field",
            "batch",
            "a batch request is `{\"batch\": [messages...]}`",
        ));
    };
    let top = match b.context {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(wrong_type("context", "an object")),
    };
    Ok(SegmentBody {
        write_key: b.write_key.and_then(|k| k.as_str().map(str::to_owned)),
        envelope: Envelope {
            sent_at: b.sent_at.filter(|v| !v.is_null()),
            context: (!top.is_empty()).then_some(top),
        },
        messages,
    })
}

/// Parses one message. `call` is the endpoint's call (`/v1/track`...), or `None` for a batch
/// item, whose `type` says it.
pub fn parse_message(
    raw: &RawValue,
    call: Option<Call>,
    envelope: &Envelope,
) -> Result<Message, FieldError> {
    let value = parse_json(raw, MAX_MESSAGE_BYTES, "message")?;
    message_from_value(value, call, envelope)
}

fn message_from_value(
    value: Value,
    call: Option<Call>,
    envelope: &Envelope,
) -> Result<Message, FieldError> {
    let Value::Object(mut m) = value else {
        return Err(wrong_type("", "a JSON object"));
    };
    m.remove("writeKey");
    let typed = match m.remove("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(Call::parse(&t).ok_or_else(|| {
            FieldError::new(
                "invalid_type",
                "type",
                format!(
                    "`{t}` is not a Segment call (track, page, screen, identify, group, alias)"
                ),
            )
        })?),
        Some(_) => return Err(wrong_type("type", "a string")),
    };
    let call = match (call, typed) {
        (Some(c), _) => c,
        (None, Some(t)) => t,
        (None, None) => {
            return Err(FieldError::new(
                "missing_field",
                "type",
                "a batch item needs `type` (track, page, screen, identify, group, alias)",
            ));
        }
    };
    let mut take = |k: &str| m.remove(k).unwrap_or(Value::Null);
    let user_id = id(take("userId"), "userId")?;
    let anonymous_id = id(take("anonymousId"), "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(FieldError::new(
            "missing_field",
            "userId",
            "a message needs `userId` or `anonymousId`",
        ));
    }
    let mut ev = AnalyticsEvent {
        user_id: user_id.clone(),
        anonymous_id: anonymous_id.clone(),
        message_id: id(take("messageId"), "messageId")?,
        ..AnalyticsEvent::default()
    };
    ev.timestamp = match take("timestamp") {
        Value::Null => timestamp(take("originalTimestamp"), "originalTimestamp")?,
        t => timestamp(t, "timestamp")?,
    };
    ev.sent_at = match take("sentAt") {
        Value::Null => match &envelope.sent_at {
            Some(s) => timestamp(s.clone(), "sentAt")?,
            None => None,
        },
        s => timestamp(s, "sentAt")?,
    };
    let mut ctx = match take("context") {
        Value::Null => Map::new(),
        Value::Object(c) => c,
        _ => return Err(wrong_type("context", "an object")),
    };
    if let Some(outer) = &envelope.context {
        for (k, v) in outer {
            ctx.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let mut props = properties(take("properties"))?;
    let mut identity: Vec<IdentityOp> =
        IdentityOp::implied_by(user_id.as_deref(), anonymous_id.as_deref())
            .into_iter()
            .collect();
    let event_name = match call {
        Call::Track => {
            // Tally's extension: the origin's shape, `category`, `action`, `label`, `value`.
            ev.category = name(take("category"), "category")?;
            ev.action = name(take("action"), "action")?;
            ev.label = opt_string(take("label"), "label", MAX_ID_CHARS)?;
            ev.value = number(take("value"), "value")?;
            match (name(take("event"), "event")?, &ev.category, &ev.action) {
                (Some(e), _, _) => e,
                (None, Some(_), Some(action)) => action.clone(),
                _ => {
                    return Err(FieldError::new(
                        "missing_field",
                        "event",
                        "a track call needs `event` (or `category` and `action`)",
                    ));
                }
            }
        }
        Call::Page | Call::Screen => {
            for key in ["name", "category"] {
                if let Some(v) = opt_string(take(key), key, MAX_ID_CHARS)? {
                    props.insert(key.to_owned(), Value::String(v));
                }
            }
            if call == Call::Page {
                fill_page(&mut ctx, &props);
                "pageview".to_owned()
            } else {
                "screen".to_owned()
            }
        }
        Call::Identify => {
            let traits = match take("traits") {
                Value::Null => match ctx.get("traits") {
                    Some(t) => object(t.clone(), "context.traits")?,
                    None => Map::new(),
                },
                t => object(t, "traits")?,
            };
            let subject = user_id.clone().or_else(|| anonymous_id.clone());
            if let Some(distinct_id) = subject {
                identity.push(IdentityOp::SetProperties {
                    distinct_id,
                    set: traits,
                    set_once: Map::new(),
                    identified: user_id.is_some(),
                });
            }
            "$identify".to_owned()
        }
        Call::Group => {
            let key = id(take("groupId"), "groupId")?.ok_or_else(|| {
                FieldError::new("missing_field", "groupId", "a group call needs `groupId`")
            })?;
            let traits = object(take("traits"), "traits")?;
            props.insert("$group_type".into(), SEGMENT_GROUP_TYPE.into());
            props.insert("$group_key".into(), Value::String(key.clone()));
            identity.push(IdentityOp::Group {
                group_type: SEGMENT_GROUP_TYPE.into(),
                key: key.clone(),
                set: traits,
            });
            // Segment ties the user, not each event, to the group: remember it on the person,
            // where `group.group.NAME` finds it for the person's other events.
            let mut groups = Map::new();
            groups.insert(SEGMENT_GROUP_TYPE.into(), Value::String(key));
            let mut set = Map::new();
            set.insert("$groups".into(), Value::Object(groups));
            identity.push(IdentityOp::SetProperties {
                distinct_id: user_id
                    .clone()
                    .or_else(|| anonymous_id.clone())
                    .unwrap_or_default(),
                set,
                set_once: Map::new(),
                identified: user_id.is_some(),
            });
            "$group".to_owned()
        }
        Call::Alias => {
            let previous = id(take("previousId"), "previousId")?.ok_or_else(|| {
                FieldError::new(
                    "missing_field",
                    "previousId",
                    "an alias call needs `previousId`",
                )
            })?;
            let Some(user) = user_id.clone() else {
                return Err(FieldError::new(
                    "missing_field",
                    "userId",
                    "an alias call needs `userId`",
                ));
            };
            props.insert("previous_id".into(), Value::String(previous.clone()));
            if previous != user {
                identity.push(IdentityOp::Merge {
                    from: previous,
                    into: user,
                    explicit: true,
                });
            }
            "$alias".to_owned()
        }
    };
    ev.event = Some(event_name);
    ev.context = context(Value::Object(ctx))?;
    ev.properties = props;
    Ok(Message {
        event: ev,
        identity,
    })
}

/// A page call's `url`, `path`, `referrer` and `title` properties describe the page when the
/// context does not.
fn fill_page(ctx: &mut Map<String, Value>, props: &Map<String, Value>) {
    let page = ctx
        .entry("page")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(page) = page else {
        return;
    };
    for key in ["url", "path", "referrer", "title"] {
        if let Some(Value::String(v)) = props.get(key) {
            page.entry(key).or_insert_with(|| Value::String(v.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value, call: Option<Call>) -> Result<Message, FieldError> {
        let raw = serde_json::value::to_raw_value(&v).unwrap();
        parse_message(&raw, call, &Envelope::default())
    }

    #[test]
    fn each_call_becomes_an_event_and_its_identity_changes() {
        let m = parse(
            json!({"type": "track", "event": "Signed Up", "userId": "u1", "anonymousId": "a1",
                   "properties": {"plan": "pro"}, "messageId": "m1",
                   "timestamp": "2026-11-20T10:00:00.000Z", "integrations": {"All": true}}),
            None,
        )
        .unwrap();
        assert_eq!(m.event.event.as_deref(), Some("Signed Up"));
        assert_eq!(m.event.properties["plan"], "pro");
        assert_eq!(
            m.identity,
            [IdentityOp::Merge {
                from: "a1".into(),
                into: "u1".into(),
                explicit: false
            }]
        );

        let m = parse(
            json!({"anonymousId": "a1", "name": "Home",
                   "properties": {"url": "https://shop.example/?utm_source=news", "path": "/", "referrer": "https://google.com/"}}),
            Some(Call::Page),
        )
        .unwrap();
        assert_eq!(m.event.event.as_deref(), Some("pageview"));
        assert_eq!(m.event.context.page.path.as_deref(), Some("/"));
        assert_eq!(
            m.event.context.page.referrer.as_deref(),
            Some("https://google.com/")
        );
        assert_eq!(m.event.properties["name"], "Home");

        let m = parse(
            json!({"type": "identify", "userId": "u1", "traits": {"email": "a@b.c"}}),
            None,
        )
        .unwrap();
        assert_eq!(m.event.event.as_deref(), Some("$identify"));
        assert!(m.event.properties.is_empty(), "traits stay out of events");
        assert!(
            matches!(&m.identity[0], IdentityOp::SetProperties { distinct_id, identified: true, .. } if distinct_id == "u1")
        );

        let m = parse(
            json!({"type": "group", "userId": "u1", "groupId": 42, "traits": {"name": "Acme"}}),
            None,
        )
        .unwrap();
        assert_eq!(m.event.properties["$group_key"], "42");
        assert!(matches!(&m.identity[0], IdentityOp::Group { key, .. } if key == "42"));

        let m = parse(
            json!({"type": "alias", "userId": "u1", "previousId": "old"}),
            None,
        )
        .unwrap();
        assert_eq!(
            m.identity,
            [IdentityOp::Merge {
                from: "old".into(),
                into: "u1".into(),
                explicit: true
            }]
        );
    }

    #[test]
    fn the_envelope_gives_sent_at_and_context() {
        let raw = serde_json::value::to_raw_value(
            &json!({"type": "screen", "userId": "u", "name": "Settings", "context": {"locale": "de-DE"}}),
        )
        .unwrap();
        let env = Envelope {
            sent_at: Some(json!("2026-11-20T10:00:00Z")),
            context: Some(
                json!({"locale": "en-US", "ip": "1.2.3.4"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        };
        let m = parse_message(&raw, None, &env).unwrap();
        assert!(m.event.sent_at.is_some());
        assert_eq!(m.event.context.locale.as_deref(), Some("de-DE"));
        assert_eq!(m.event.context.ip.as_deref(), Some("1.2.3.4"));
        assert_eq!(m.event.properties["name"], "Settings");
    }

    #[test]
    fn bad_messages_name_the_field() {
        let cases = [
            (
                json!({"type": "track", "userId": "u"}),
                "missing_field",
                "event",
            ),
            (
                json!({"type": "track", "event": "x"}),
                "missing_field",
                "userId",
            ),
            (
                json!({"event": "x", "userId": "u"}),
                "missing_field",
                "type",
            ),
            (
                json!({"type": "hover", "userId": "u"}),
                "invalid_type",
                "type",
            ),
            (
                json!({"type": "alias", "userId": "u"}),
                "missing_field",
                "previousId",
            ),
            (
                json!({"type": "group", "userId": "u"}),
                "missing_field",
                "groupId",
            ),
            (
                json!({"type": "identify", "userId": "u", "traits": [1]}),
                "wrong_type",
                "traits",
            ),
            (
                json!({"type": "track", "event": "x", "userId": "u", "timestamp": "soon"}),
                "invalid_timestamp",
                "timestamp",
            ),
        ];
        for (v, code, field) in cases {
            let e = parse(v.clone(), None).unwrap_err();
            assert_eq!((e.code.as_str(), e.field.as_str()), (code, field), "{v}");
        }
        let big = json!({"type": "track", "event": "x", "userId": "u", "properties": {"b": "x".repeat(33_000)}});
        assert_eq!(parse(big, None).unwrap_err().code, "message_too_large");
    }
}
