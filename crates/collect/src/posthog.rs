//! PostHog's capture API shapes (`/capture/`, `/batch/`, `/e/`, `/i/v0/e/`): the body encodings
//! its libraries send, and each captured event as an event plus the [`IdentityOp`]s it asks for.
//!
//! Bodies: JSON (one event, an array of events, or `{"batch": [...]}`), optionally gzip
//! (`Content-Encoding: gzip` or `?compression=gzip-js`), or a form (`data=...`, the JSON either
//! URL-encoded or base64, `compression=base64` optional).
//!
//! | PostHog | Tally |
//! |---|---|
//! | `distinct_id` (top level or in `properties`) | `user_id`; `anonymous_id` when `properties.$is_identified` is `false` |
//! | `$pageview` | the event `pageview` (what sessions and paths read) |
//! | `uuid` | `message_id` (de-duplication) |
//! | `timestamp`, `sent_at` or `offset` | event time with clock-skew correction |
//! | `$current_url`, `$pathname`, `$referrer`, `title`, `$raw_user_agent`, `$ip`, `$lib` | page, referrer, user-agent, IP and library columns |
//! | `$set`, `$set_once` (in `properties` or top level) | person properties |
//! | `$identify` with `$anon_distinct_id` | the anonymous id merged into `distinct_id` (implicit merge) |
//! | `$create_alias` with `alias` | `alias` merged into the event's `distinct_id` (explicit) |
//! | `$groupidentify` with `$group_type`, `$group_key`, `$group_set` | group properties |
//!
//! Every property is kept in `properties` (the `$` ones too), so nothing a dashboard built on
//! PostHog filters on is lost.

use std::io::Read;

use base64::Engine;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tally_core::{AnalyticsEvent, FieldError, IdentityOp};

use crate::Message;
use crate::body::{BodyError, Limits};
use crate::native::{MAX_NAME_CHARS, context, id, name, object, parse_json, timestamp, wrong_type};

/// A decoded request: the project key it carries (if any), the batch's `sent_at`, and the raw
/// events.
#[derive(Debug)]
pub struct PostHogBody<'a> {
    pub api_key: Option<String>,
    pub sent_at: Option<Value>,
    pub events: Vec<&'a RawValue>,
}

/// Undoes the transport encodings PostHog's libraries use and returns the JSON text.
/// `compression` is the `compression` query parameter, `form` whether the body is
/// `application/x-www-form-urlencoded` (also assumed when it starts with `data=`).
pub fn decode_body(
    body: &[u8],
    content_encoding: Option<&str>,
    compression: Option<&str>,
    form: bool,
    limits: &Limits,
) -> Result<Vec<u8>, BodyError> {
    let mut bytes = crate::body::decode_encoding(body, content_encoding, limits)?;
    let mut compression = compression.map(str::to_owned);
    if form || bytes.starts_with(b"data=") {
        let mut data = None;
        for (k, v) in url::form_urlencoded::parse(&bytes) {
            match k.as_ref() {
                "data" => data = Some(v.into_owned()),
                "compression" => compression = Some(v.into_owned()),
                _ => {}
            }
        }
        let data = data.ok_or(BodyError::WrongShape("a form body needs a `data` field"))?;
        let trimmed = data.trim();
        bytes = if trimmed.starts_with('{') || trimmed.starts_with('[') {
            trimmed.as_bytes().to_vec()
        } else {
            decode_base64(trimmed)?
        };
    }
    if matches!(compression.as_deref(), Some("gzip" | "gzip-js"))
        || bytes.starts_with(&[0x1f, 0x8b])
    {
        bytes = gunzip(&bytes, limits.max_decompressed_bytes)?;
    }
    if bytes.len() > limits.max_decompressed_bytes {
        return Err(BodyError::TooLarge {
            limit: limits.max_decompressed_bytes,
        });
    }
    Ok(bytes)
}

fn decode_base64(s: &str) -> Result<Vec<u8>, BodyError> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let cleaned: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let unpadded = cleaned.trim_end_matches('=');
    let lenient = |e: &base64::engine::GeneralPurpose| {
        let padded = format!("{unpadded}{}", "=".repeat((4 - unpadded.len() % 4) % 4));
        e.decode(padded)
    };
    lenient(&STANDARD)
        .or_else(|_| lenient(&URL_SAFE))
        .map_err(|e| BodyError::Malformed(format!("`data` is neither JSON nor base64: {e}")))
}

fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::BadGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(out)
}

/// Splits decoded JSON into its events.
pub fn split_body<'a>(json: &'a [u8], limits: &Limits) -> Result<PostHogBody<'a>, BodyError> {
    #[derive(serde::Deserialize)]
    struct Object<'a> {
        #[serde(borrow)]
        batch: Option<Vec<&'a RawValue>>,
        api_key: Option<Value>,
        token: Option<Value>,
        sent_at: Option<Value>,
    }
    let malformed = |e: serde_json::Error| BodyError::Malformed(e.to_string());
    let raw: &RawValue = serde_json::from_slice(json).map_err(malformed)?;
    let (events, api_key, sent_at) = if raw.get().trim_start().starts_with('[') {
        let list: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(malformed)?;
        (list, None, None)
    } else {
        let o: Object = serde_json::from_str(raw.get()).map_err(malformed)?;
        let key = o.api_key.or(o.token);
        match o.batch {
            Some(batch) => (batch, key, o.sent_at),
            None => (vec![raw], key, o.sent_at),
        }
    };
    if events.len() > limits.max_batch_events {
        return Err(BodyError::TooManyEvents {
            count: events.len(),
            limit: limits.max_batch_events,
        });
    }
    let mut api_key = api_key.and_then(|k| k.as_str().map(str::to_owned));
    if api_key.is_none() {
        // posthog-js puts the token in each event's properties.
        api_key = events.iter().find_map(|e| event_token(e));
    }
    Ok(PostHogBody {
        api_key,
        sent_at: sent_at.filter(|v| !v.is_null()),
        events,
    })
}

/// The key an event carries itself (posthog-js puts `token` in each event's properties).
pub fn event_token(raw: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct E {
        api_key: Option<String>,
        token: Option<String>,
        properties: Option<P>,
    }
    #[derive(serde::Deserialize)]
    struct P {
        token: Option<String>,
    }
    let e: E = serde_json::from_str(raw.get()).ok()?;
    e.api_key
        .or(e.token)
        .or_else(|| e.properties.and_then(|p| p.token))
}

/// Parses one captured event. `sent_at` is the batch's, if any.
pub fn parse_event(
    raw: &RawValue,
    max_bytes: usize,
    sent_at: Option<&Value>,
) -> Result<Message, FieldError> {
    let Value::Object(mut m) = parse_json(raw, max_bytes, "event")? else {
        return Err(wrong_type("", "a JSON object"));
    };
    let mut props = object(m.remove("properties").unwrap_or(Value::Null), "properties")?;
    let event = name(m.remove("event").unwrap_or(Value::Null), "event")?
        .ok_or_else(|| FieldError::new("missing_field", "event", "an event needs `event`"))?;
    let distinct_id = match m.remove("distinct_id").filter(|v| !v.is_null()) {
        Some(v) => id(v, "distinct_id")?,
        None => match props
            .get("distinct_id")
            .or_else(|| props.get("$distinct_id"))
        {
            Some(v) => id(v.clone(), "properties.distinct_id")?,
            None => None,
        },
    }
    .ok_or_else(|| {
        FieldError::new(
            "missing_field",
            "distinct_id",
            "an event needs `distinct_id` (or `properties.distinct_id`)",
        )
    })?;
    let anonymous = props.get("$is_identified") == Some(&Value::Bool(false));
    let mut ev = AnalyticsEvent {
        event: Some(if event == "$pageview" {
            "pageview".to_owned()
        } else {
            event.clone()
        }),
        ..AnalyticsEvent::default()
    };
    if anonymous {
        ev.anonymous_id = Some(distinct_id.clone());
    } else {
        ev.user_id = Some(distinct_id.clone());
    }
    ev.message_id = match m.remove("uuid") {
        Some(v) => id(v, "uuid")?,
        None => match props.get("$insert_id") {
            Some(v) => id(v.clone(), "properties.$insert_id")?,
            None => None,
        },
    };
    ev.timestamp = timestamp(m.remove("timestamp").unwrap_or(Value::Null), "timestamp")?;
    ev.sent_at = match m.remove("sent_at").filter(|v| !v.is_null()) {
        Some(v) => timestamp(v, "sent_at")?,
        None => match sent_at {
            Some(v) => timestamp(v.clone(), "sent_at")?,
            None => None,
        },
    };
    if ev.timestamp.is_none()
        && let Some(offset) = m.remove("offset").and_then(|v| v.as_i64())
    {
        // Milliseconds before the request: PostHog's other way of dating an event.
        // An absurd offset dates the event absurdly (the processor refuses it), never panics.
        let ago = chrono::Duration::try_milliseconds(offset.clamp(0, 100 * 365 * 86_400_000))
            .unwrap_or_default();
        ev.timestamp = chrono::Utc::now().checked_sub_signed(ago);
    }

    // The page, the client and the person, from PostHog's `$` properties.
    let text = |k: &str| props.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut ctx = Map::new();
    let mut page = Map::new();
    if let Some(u) = text("$current_url") {
        page.insert("url".into(), u.into());
    }
    if let Some(p) = text("$pathname") {
        page.insert("path".into(), p.into());
    }
    if let Some(r) = text("$referrer").filter(|r| r != "$direct") {
        page.insert("referrer".into(), r.into());
    }
    if let Some(t) = text("title").or_else(|| text("$title")) {
        page.insert("title".into(), t.into());
    }
    if !page.is_empty() {
        ctx.insert("page".into(), Value::Object(page));
    }
    if let Some(ua) = text("$raw_user_agent").or_else(|| text("$user_agent")) {
        ctx.insert("user_agent".into(), ua.into());
    }
    if let Some(ip) = text("$ip") {
        ctx.insert("ip".into(), ip.into());
    }
    if let Some(lib) = text("$lib") {
        let version = text("$lib_version").unwrap_or_default();
        ctx.insert(
            "library".into(),
            Value::String(format!("{lib} {version}").trim().to_owned()),
        );
    }
    if let Some(locale) = text("$locale") {
        ctx.insert("locale".into(), locale.into());
    }
    ev.context = context(Value::Object(ctx))?;

    let mut identity = Vec::new();
    let person_props =
        |key: &str, from: &mut Map<String, Value>| -> Result<Map<String, Value>, FieldError> {
            match from.remove(key) {
                Some(v) => object(v, key),
                None => Ok(Map::new()),
            }
        };
    let mut set = person_props("$set", &mut m)?;
    set.extend(person_props("$set", &mut props)?);
    let mut set_once = person_props("$set_once", &mut m)?;
    set_once.extend(person_props("$set_once", &mut props)?);
    match event.as_str() {
        "$identify" => {
            if let Some(anon) = props.get("$anon_distinct_id").cloned() {
                let anon = id(anon, "properties.$anon_distinct_id")?;
                if let Some(op) = IdentityOp::implied_by(Some(&distinct_id), anon.as_deref()) {
                    identity.push(op);
                }
            }
        }
        "$create_alias" => {
            let alias = props
                .get("alias")
                .cloned()
                .map(|v| id(v, "properties.alias"))
                .transpose()?
                .flatten()
                .ok_or_else(|| {
                    FieldError::new(
                        "missing_field",
                        "properties.alias",
                        "a $create_alias event needs `properties.alias`",
                    )
                })?;
            if alias != distinct_id {
                identity.push(IdentityOp::Merge {
                    from: alias,
                    into: distinct_id.clone(),
                    explicit: true,
                });
            }
        }
        "$groupidentify" => {
            let field = |k: &str| {
                props
                    .get(k)
                    .cloned()
                    .map(|v| id(v, &format!("properties.{k}")))
                    .transpose()
                    .map(Option::flatten)
            };
            let group_type = field("$group_type")?.ok_or_else(|| {
                FieldError::new(
                    "missing_field",
                    "properties.$group_type",
                    "a $groupidentify event needs `$group_type`",
                )
            })?;
            if group_type.chars().count() > MAX_NAME_CHARS {
                return Err(FieldError::new(
                    "too_long",
                    "properties.$group_type",
                    format!("at most {MAX_NAME_CHARS} characters"),
                ));
            }
            let key = field("$group_key")?.ok_or_else(|| {
                FieldError::new(
                    "missing_field",
                    "properties.$group_key",
                    "a $groupidentify event needs `$group_key`",
                )
            })?;
            let group_set = object(
                props.get("$group_set").cloned().unwrap_or(Value::Null),
                "properties.$group_set",
            )?;
            identity.push(IdentityOp::Group {
                group_type,
                key,
                set: group_set,
            });
        }
        _ => {}
    }
    if !set.is_empty() || !set_once.is_empty() {
        identity.push(IdentityOp::SetProperties {
            distinct_id: distinct_id.clone(),
            set,
            set_once,
            identified: !anonymous,
        });
    }
    props.remove("token");
    ev.properties = props;
    Ok(Message {
        event: ev,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Message, FieldError> {
        let raw = serde_json::value::to_raw_value(&v).unwrap();
        parse_event(&raw, 32 << 10, None)
    }

    #[test]
    fn events_and_their_identity_changes() {
        let m = parse(json!({"event": "$pageview", "properties": {"distinct_id": "anon-1", "$is_identified": false,
            "$current_url": "https://shop.example/a?utm_source=x", "$referrer": "$direct", "token": "k"}})).unwrap();
        assert_eq!(m.event.event.as_deref(), Some("pageview"));
        assert_eq!(m.event.anonymous_id.as_deref(), Some("anon-1"));
        assert!(m.event.user_id.is_none());
        assert!(m.event.context.page.referrer.is_none());
        assert!(!m.event.properties.contains_key("token"));
        assert!(m.identity.is_empty());

        let m = parse(json!({"event": "$identify", "distinct_id": "u1",
            "properties": {"$anon_distinct_id": "anon-1", "$set": {"plan": "pro"}}}))
        .unwrap();
        assert_eq!(m.identity.len(), 2);
        assert_eq!(
            m.identity[0],
            IdentityOp::Merge {
                from: "anon-1".into(),
                into: "u1".into(),
                explicit: false
            }
        );
        assert!(
            matches!(&m.identity[1], IdentityOp::SetProperties { set, .. } if set["plan"] == "pro")
        );

        let m = parse(json!({"event": "$create_alias", "distinct_id": "old",
            "properties": {"distinct_id": "old", "alias": "new"}}))
        .unwrap();
        assert_eq!(
            m.identity,
            [IdentityOp::Merge {
                from: "new".into(),
                into: "old".into(),
                explicit: true
            }]
        );

        let m = parse(json!({"event": "$groupidentify", "distinct_id": "u1",
            "properties": {"$group_type": "company", "$group_key": "acme", "$group_set": {"seats": 3}}})).unwrap();
        assert!(
            matches!(&m.identity[0], IdentityOp::Group { group_type, key, .. } if group_type == "company" && key == "acme")
        );
    }

    #[test]
    fn bodies_in_every_encoding() {
        let limits = Limits::default();
        let events = json!([{"event": "e", "properties": {"distinct_id": "d", "token": "tok"}}]);
        let text = events.to_string();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&text);
        let form_b64 = format!(
            "data={}&compression=base64",
            url::form_urlencoded::byte_serialize(b64.as_bytes()).collect::<String>()
        );
        let form_json = format!(
            "data={}",
            url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        for (body, compression, form) in [
            (text.as_bytes().to_vec(), None, false),
            (form_b64.into_bytes(), None, true),
            (form_json.into_bytes(), None, false),
            (gz, Some("gzip-js"), false),
        ] {
            let json = decode_body(&body, None, compression, form, &limits).unwrap();
            let b = split_body(&json, &limits).unwrap();
            assert_eq!(b.api_key.as_deref(), Some("tok"));
            assert_eq!(b.events.len(), 1);
        }
        let one = json!({"api_key": "k2", "event": "e", "distinct_id": "d"}).to_string();
        let b = split_body(one.as_bytes(), &limits).unwrap();
        assert_eq!((b.api_key.as_deref(), b.events.len()), (Some("k2"), 1));
        let batch = json!({"api_key": "k3", "batch": [{"event": "a", "distinct_id": "d"}, {"event": "b", "distinct_id": "d"}], "sent_at": "2026-11-20T10:00:00Z"}).to_string();
        let b = split_body(batch.as_bytes(), &limits).unwrap();
        assert_eq!((b.api_key.as_deref(), b.events.len()), (Some("k3"), 2));
        assert!(b.sent_at.is_some());
        assert!(decode_body(b"data=%%%", None, None, true, &limits).is_err());
    }

    #[test]
    fn an_absurd_offset_does_not_panic() {
        for offset in [i64::MAX, i64::MIN, -5] {
            let m = parse(json!({"event": "e", "distinct_id": "d", "offset": offset})).unwrap();
            assert!(m.event.timestamp.is_some());
        }
    }

    #[test]
    fn bad_events_name_the_field() {
        for (v, code, field) in [
            (json!({"distinct_id": "d"}), "missing_field", "event"),
            (json!({"event": "e"}), "missing_field", "distinct_id"),
            (
                json!({"event": "e", "distinct_id": "d", "properties": 3}),
                "wrong_type",
                "properties",
            ),
            (
                json!({"event": "$create_alias", "distinct_id": "d"}),
                "missing_field",
                "properties.alias",
            ),
            (
                json!({"event": "e", "distinct_id": "d", "timestamp": "later"}),
                "invalid_timestamp",
                "timestamp",
            ),
        ] {
            let e = parse(v.clone()).unwrap_err();
            assert_eq!((e.code.as_str(), e.field.as_str()), (code, field), "{v}");
        }
    }
}
