//! What the browser tracker (`/t.js`) sends to `POST /t/e`: `{"k": write key, "n": event name,
//! "u": page URL, "r": referrer, "t": title, "p": properties}` (short keys keep the script
//! small). The visitor, the client's address and its user agent are the server's to add.

use serde::Deserialize;
use serde_json::Value;
use tally_core::{AnalyticsEvent, EventContext, FieldError, Page};

use crate::native::{name, object, opt_string};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hit {
    k: String,
    n: Value,
    u: Option<Value>,
    r: Option<Value>,
    t: Option<Value>,
    p: Option<Value>,
}

/// The write key and the event of a tracker hit.
pub fn parse_hit(json: &[u8]) -> Result<(String, AnalyticsEvent), FieldError> {
    let hit: Hit = serde_json::from_slice(json)
        .map_err(|e| FieldError::new("invalid_body", "body", e.to_string()))?;
    let text = |v: Option<Value>, f: &str, max| opt_string(v.unwrap_or(Value::Null), f, max);
    let event = AnalyticsEvent {
        event: Some(
            name(hit.n, "n")?
                .ok_or_else(|| FieldError::new("missing_field", "n", "an event needs a name"))?,
        ),
        properties: object(hit.p.unwrap_or(Value::Null), "p")?,
        context: EventContext {
            page: Page {
                url: text(hit.u, "u", 4096)?,
                path: None,
                referrer: text(hit.r, "r", 4096)?,
                title: text(hit.t, "t", 1024)?,
            },
            library: Some("tally.js".into()),
            ..EventContext::default()
        },
        ..AnalyticsEvent::default()
    };
    Ok((hit.k, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_and_their_errors() {
        let (k, e) = parse_hit(
            br#"{"k":"tw_x","n":"pageview","u":"https://a.example/p?q=1","r":null,"t":"P","p":{"plan":"pro"}}"#,
        )
        .unwrap();
        assert_eq!(k, "tw_x");
        assert_eq!(e.event.as_deref(), Some("pageview"));
        assert_eq!(e.context.page.title.as_deref(), Some("P"));
        assert_eq!(e.properties["plan"], "pro");
        for (body, field) in [
            (&br#"{"k":"x","n":""}"#[..], "n"),
            (br#"{"k":"x","n":"e","p":[1]}"#, "p"),
            (br#"{"k":"x","n":"e","extra":1}"#, "body"),
            (br#"{"n":"e"}"#, "body"),
            (br#"{"k":"x","n":"e","u":5}"#, "u"),
        ] {
            assert_eq!(
                parse_hit(body).unwrap_err().field,
                field,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
