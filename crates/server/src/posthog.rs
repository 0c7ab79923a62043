//! PostHog's capture API: `POST /capture/`, `/batch/`, `/e/`, `/i/v0/e/` (with or without the
//! trailing slash). The project's write key is the `api_key` or `token` of the body (or of each
//! event's properties, as posthog-js sends it), or a bearer key.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use tally_catalog::KeyScope;
use tally_collect::posthog;

use crate::auth::{basic_user_or_bearer, check_key};
use crate::error::ApiError;
use crate::ingest::{
    Processed, Rejection, body_error, content_encoding, finish_messages, read_body,
};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub(crate) struct CaptureParams {
    compression: Option<String>,
}

pub(crate) async fn capture(
    State(state): State<AppState>,
    Query(params): Query<CaptureParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let s = &state.inner;
    let header_key = basic_user_or_bearer(&headers);
    let (bytes, _memory) = read_body(&state, &headers, body).await?;
    let encoding = content_encoding(&headers);
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let limits = s.limits;
    // Gunzip, decode and find the key off the async workers.
    let (json, body_key) = tokio::task::spawn_blocking(move || {
        let json = posthog::decode_body(
            &bytes,
            encoding.as_deref(),
            params.compression.as_deref(),
            form,
            &limits,
        )?;
        let key = posthog::split_body(&json, &limits)?.api_key;
        Ok::<_, tally_collect::BodyError>((json, key))
    })
    .await
    .map_err(|e| ApiError::internal("decoding the body failed", e))?
    .map_err(body_error)?;
    let (key, field) = match (body_key, header_key) {
        (Some(k), _) => (k, "api_key"),
        (None, Some(k)) => (k, "authorization"),
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_key",
                "send the project's write key as `api_key` (or `token`) in the body",
            )
            .field("api_key"));
        }
    };
    let project = check_key(&s.keys, &s.catalog, &key, KeyScope::Write, field)?;
    let key_for_work = key.clone();

    let schemas = s.schemas(&project)?;
    let processor = Arc::clone(&s.processor);
    let received_at = Utc::now();
    let for_work = project.clone();
    let processed = tokio::task::spawn_blocking(move || {
        let key = key_for_work;
        let split = posthog::split_body(&json, &limits).map_err(body_error)?;
        let mut p = Processed::default();
        for (index, raw) in split.events.iter().enumerate() {
            // An event that names another project's key is not filed under this one.
            let own_key = posthog::event_token(raw).filter(|own| *own != key);
            let outcome = match own_key {
                Some(_) => Err(tally_core::FieldError::new(
                    "key_mismatch",
                    "properties.token",
                    "the event carries another key than its request",
                )),
                None => posthog::parse_event(raw, limits.max_event_bytes, split.sent_at.as_ref())
                    .and_then(|m| {
                        let r = processor.process(&for_work, &schemas, m.event, received_at)?;
                        Ok((r, m.identity))
                    }),
            };
            p.add(index, outcome);
        }
        Ok::<_, ApiError>(p)
    })
    .await
    .map_err(|e| ApiError::internal("processing the events failed", e))??;
    finish_messages(
        &state,
        project,
        processed,
        |r: &Rejection| format!("batch[{}].{}", r.index, r.error.field),
        ("status", 1.into(), 0.into()),
    )
    .await
}

/// The routes, each with and without its trailing slash.
pub(crate) fn routes() -> axum::Router<AppState> {
    use axum::routing::post;
    let mut router = axum::Router::new();
    for path in ["/capture", "/batch", "/e", "/i/v0/e"] {
        router = router
            .route(path, post(capture))
            .route(&format!("{path}/"), post(capture));
    }
    router
}
