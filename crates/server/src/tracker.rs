//! The browser tracker: `GET /t.js` (the script, under 2 KB gzipped) and `POST /t/e` (what it
//! sends).
//!
//! No cookies and nothing stored in the browser: the visitor id is computed here, as Plausible
//! does, from a salt that changes every UTC day (and is deleted the day after), the project, the
//! client's IP address and its user agent. The same browser is one visitor within a day and
//! cannot be followed across days, and the IP itself is truncated (or dropped) before anything is
//! written. Requests with `DNT: 1` or `Sec-GPC: 1` are answered and dropped; the script does not
//! even send them.

use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use parking_lot::Mutex;
use serde_json::json;
use sha2::{Digest, Sha256};
use tally_catalog::KeyScope;
use tally_collect::tracker;
use tally_core::{FieldError, ProjectId};

use crate::auth::check_key;
use crate::error::ApiError;
use crate::ingest::{content_encoding, read_body, submit};
use crate::state::AppState;

/// The script, minified (its readable source is `assets/t.src.js`).
pub(crate) const SCRIPT: &str = include_str!("../assets/t.js");

static SCRIPT_GZIP: LazyLock<Vec<u8>> = LazyLock::new(|| {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = gz.write_all(SCRIPT.as_bytes());
    gz.finish().unwrap_or_default()
});

/// `GET /t.js`.
pub(crate) async fn script(headers: HeaderMap) -> Response {
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let mut r = if gzip {
        let mut r = SCRIPT_GZIP.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        SCRIPT.into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    r
}

/// Today's salt, cached per UTC day.
#[derive(Debug, Default)]
pub(crate) struct VisitorSalt(Mutex<Option<(String, String)>>);

impl VisitorSalt {
    fn today(&self, catalog: &tally_catalog::Catalog) -> Result<String, ApiError> {
        let now = Utc::now();
        let today = now.format("%Y-%m-%d").to_string();
        if let Some((day, salt)) = &*self.0.lock()
            && *day == today
        {
            return Ok(salt.clone());
        }
        let yesterday = (now - Duration::days(1)).format("%Y-%m-%d").to_string();
        let salt = catalog
            .daily_salt("visitor_salt", &today, &yesterday)
            .map_err(|e| ApiError::internal("reading the visitor salt failed", e))?;
        *self.0.lock() = Some((today, salt.clone()));
        Ok(salt)
    }
}

pub(crate) fn client_ip(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Option<String> {
    // The last entry is the one the trusted proxy appended (what it saw connecting to it);
    // earlier entries are whatever the client sent.
    if state.inner.trust_proxy
        && let Some(last) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty())
    {
        return Some(last.to_owned());
    }
    peer.map(|p| p.ip().to_string())
}

fn visitor_id(salt: &str, project: &ProjectId, ip: &str, user_agent: &str) -> String {
    let mut h = Sha256::new();
    for part in [salt, project.as_str(), ip, user_agent] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("v_{}", hex::encode(&h.finalize()[..8]))
}

/// `POST /t/e`.
pub(crate) async fn hit(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let opted_out = ["dnt", "sec-gpc"]
        .iter()
        .any(|h| headers.get(*h).is_some_and(|v| v.as_bytes() == b"1"));
    if opted_out {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"accepted": 0, "ignored": "do_not_track"})),
        )
            .into_response());
    }
    let s = &state.inner;
    let (bytes, _memory) = read_body(&state, &headers, Body::new(body)).await?;
    // A hit is one event: it may not grow past the event limit when gunzipped.
    let limits = tally_collect::Limits {
        max_decompressed_bytes: s.limits.max_event_bytes,
        ..s.limits
    };
    let json = tally_collect::body::decode_encoding(
        &bytes,
        content_encoding(&headers).as_deref(),
        &limits,
    )
    .map_err(crate::ingest::body_error)?;
    if json.len() > limits.max_event_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            format!("an event is at most {} bytes", limits.max_event_bytes),
        )
        .field("body"));
    }
    let field =
        |e: FieldError| ApiError::new(StatusCode::BAD_REQUEST, &e.code, e.message).field(e.field);
    let (key, mut event) = tracker::parse_hit(&json).map_err(field)?;
    let project = check_key(&s.keys, &s.catalog, &key, KeyScope::Write, "k")?;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let ip = client_ip(&state, &headers, peer);
    let salt = s.salt.today(&s.catalog)?;
    event.anonymous_id = Some(visitor_id(
        &salt,
        &project,
        ip.as_deref().unwrap_or(""),
        &user_agent,
    ));
    event.context.user_agent = Some(user_agent).filter(|u| !u.is_empty());
    event.context.ip = ip;
    event.context.locale = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split([',', ';']).next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let schemas = s.schemas(&project)?;
    let record = s
        .processor
        .process(&project, &schemas, event, Utc::now())
        .map_err(field)?;
    submit(&state, project, record.into_iter().collect(), 0).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": 1}))).into_response())
}

/// CORS for the ingest endpoints only: any origin may send events (with no credentials); the
/// query and admin endpoints stay same-origin.
pub(crate) fn ingest_cors() -> tower_http::cors::CorsLayer {
    use axum::http::Method;
    use tower_http::cors::{AllowOrigin, CorsLayer};
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::AUTHORIZATION,
        ])
        .max_age(std::time::Duration::from_secs(86_400))
}
