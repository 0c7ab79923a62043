//! Request bodies: optional gzip, then one event, an array of events, or `{"events": [...]}`.

use std::io::Read;

use serde_json::value::RawValue;

/// Limits on what one request may carry. Documented in `docs/LIMITS.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the body as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Bytes of the body once decompressed.
    pub max_decompressed_bytes: usize,
    /// Events in one request.
    pub max_batch_events: usize,
    /// Bytes of one event's JSON.
    pub max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 5 << 20,
            max_decompressed_bytes: 20 << 20,
            max_batch_events: 10_000,
            max_event_bytes: 32 << 10,
        }
    }
}

/// Why a whole body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body holds {count} events; at most {limit} per request")]
    TooManyEvents { count: usize, limit: usize },
    #[error("the body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("unsupported Content-Encoding `{0}`: use gzip or none")]
    UnsupportedEncoding(String),
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    #[error("{0}")]
    WrongShape(&'static str),
}

impl BodyError {
    /// A stable machine-readable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "payload_too_large",
            Self::TooManyEvents { .. } => "too_many_events",
            Self::BadGzip(_) => "invalid_gzip",
            Self::UnsupportedEncoding(_) => "unsupported_encoding",
            Self::Malformed(_) => "malformed_json",
            Self::WrongShape(_) => "invalid_body",
        }
    }
}

/// Undoes `Content-Encoding` (none, `identity` or `gzip`), enforcing the size limits.
pub fn decode_encoding(
    body: &[u8],
    content_encoding: Option<&str>,
    limits: &Limits,
) -> Result<Vec<u8>, BodyError> {
    if body.len() > limits.max_body_bytes {
        return Err(BodyError::TooLarge {
            limit: limits.max_body_bytes,
        });
    }
    match content_encoding
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some("gzip") | Some("x-gzip") => gunzip(body, limits.max_decompressed_bytes),
        Some(other) => Err(BodyError::UnsupportedEncoding(other.to_owned())),
    }
}

/// Decompresses gzip, refusing output beyond `limit` bytes (a gzip bomb stops there).
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let mut dec = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| BodyError::BadGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(out)
}

/// Splits a JSON body into the raw JSON of each event, without parsing the events themselves.
pub fn split_events<'a>(json: &'a [u8], limits: &Limits) -> Result<Vec<&'a RawValue>, BodyError> {
    let text =
        std::str::from_utf8(json).map_err(|e| BodyError::Malformed(format!("not UTF-8: {e}")))?;
    let first = text.trim_start().as_bytes().first().copied();
    let events: Vec<&RawValue> = match first {
        Some(b'[') => {
            serde_json::from_str(text).map_err(|e| BodyError::Malformed(e.to_string()))?
        }
        Some(b'{') => {
            let map: std::collections::HashMap<String, &RawValue> =
                serde_json::from_str(text).map_err(|e| BodyError::Malformed(e.to_string()))?;
            match map.get("events") {
                Some(events) if map.len() == 1 => {
                    serde_json::from_str(events.get()).map_err(|_| {
                        BodyError::WrongShape("`events` must be an array of event objects")
                    })?
                }
                _ => vec![
                    serde_json::from_str(text).map_err(|e| BodyError::Malformed(e.to_string()))?,
                ],
            }
        }
        _ => {
            // Let serde say what is wrong with it (empty, a number, garbage...).
            serde_json::from_str::<&RawValue>(text)
                .map_err(|e| BodyError::Malformed(e.to_string()))?;
            return Err(BodyError::WrongShape(
                "the body must be an event object, an array of events or {\"events\": [...]}",
            ));
        }
    };
    if events.len() > limits.max_batch_events {
        return Err(BodyError::TooManyEvents {
            count: events.len(),
            limit: limits.max_batch_events,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn three_shapes() {
        let l = Limits::default();
        assert_eq!(split_events(br#"{"event":"a"}"#, &l).unwrap().len(), 1);
        assert_eq!(
            split_events(br#"[{"event":"a"},{"event":"b"}]"#, &l)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            split_events(br#"{"events":[{"event":"a"},1]}"#, &l)
                .unwrap()
                .len(),
            2
        );
        assert!(matches!(
            split_events(b"{", &l),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            split_events(b"12", &l),
            Err(BodyError::WrongShape(_))
        ));
        assert!(matches!(
            split_events(b"", &l),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            split_events(br#"{"events":3}"#, &l),
            Err(BodyError::WrongShape(_))
        ));
    }

    #[test]
    fn gzip_and_its_bomb_limit() {
        let l = Limits {
            max_decompressed_bytes: 1000,
            ..Limits::default()
        };
        let body = gz(br#"{"event":"a"}"#);
        assert_eq!(
            decode_encoding(&body, Some("gzip"), &l).unwrap(),
            br#"{"event":"a"}"#
        );
        let bomb = gz(&vec![b' '; 100_000]);
        assert!(matches!(
            decode_encoding(&bomb, Some("gzip"), &l),
            Err(BodyError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_encoding(b"nope", Some("gzip"), &l),
            Err(BodyError::BadGzip(_))
        ));
        assert!(matches!(
            decode_encoding(b"{}", Some("br"), &l),
            Err(BodyError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn too_many_events() {
        let l = Limits {
            max_batch_events: 2,
            ..Limits::default()
        };
        assert!(matches!(
            split_events(b"[{},{},{}]", &l),
            Err(BodyError::TooManyEvents { count: 3, limit: 2 })
        ));
    }
}
