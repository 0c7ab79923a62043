//! Segment's HTTP Tracking API: `POST /v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`,
//! `/v1/group`, `/v1/alias`, `/v1/batch` (and `/v1/import`, its older name).
//!
//! The write key comes as the HTTP Basic user name (what Segment's libraries send), as a bearer
//! key, or as `writeKey` in the body. Segment's limits hold: 32 KB per message and 500 KB per
//! request, answered with 400 as Segment does. Identity changes are applied (durably, in the
//! metadata store) before the events are queued; both are done when the answer is 200.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use tally_catalog::KeyScope;
use tally_collect::body;
use tally_collect::segment::{self, Call, MAX_BATCH_BYTES};

use crate::auth::{basic_user_or_bearer, check_key};
use crate::error::ApiError;
use crate::ingest::{
    Processed, Rejection, body_error, content_encoding, finish_messages, read_body,
};
use crate::state::AppState;

/// One handler for every call; `call` is `None` for a batch.
pub(crate) async fn handle(
    state: AppState,
    headers: HeaderMap,
    body: Body,
    call: Option<Call>,
) -> Result<Response, ApiError> {
    let s = &state.inner;
    let header_key = basic_user_or_bearer(&headers);
    let (bytes, _memory) = read_body(&state, &headers, body).await?;
    let encoding = content_encoding(&headers);
    let limits = s.limits;
    let limit = if call.is_some() {
        segment::MAX_MESSAGE_BYTES
    } else {
        MAX_BATCH_BYTES
    };
    // Gunzip no further than Segment's limit (plus one byte, to tell "over" from "at").
    let decode_limits = tally_collect::Limits {
        max_decompressed_bytes: limit + 1,
        ..limits
    };
    let json = tokio::task::spawn_blocking(move || {
        body::decode_encoding(&bytes, encoding.as_deref(), &decode_limits)
    })
    .await
    .map_err(|e| ApiError::internal("decoding the body failed", e))?
    .map_err(|e| match e {
        body::BodyError::TooLarge { .. } => too_large(limit, call.is_some()),
        e => body_error(e),
    })?;
    if json.len() > limit {
        return Err(too_large(limit, call.is_some()));
    }
    // The envelope first (a fast scan that does not parse the messages): it may hold the key.
    let (write_key, count) = {
        let split = segment::split_body(&json, call.is_none()).map_err(field_error)?;
        (split.write_key, split.messages.len())
    };
    let (key, key_field) = match (header_key, write_key) {
        (Some(k), _) => (k, "authorization"),
        (None, Some(k)) => (k, "writeKey"),
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_key",
                "send the write key as the HTTP Basic user name, or as `writeKey` in the body",
            )
            .field("authorization"));
        }
    };
    let project = check_key(&s.keys, &s.catalog, &key, KeyScope::Write, key_field)?;
    if count > limits.max_batch_events {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_events",
            format!(
                "the batch holds {count} messages; at most {}",
                limits.max_batch_events
            ),
        )
        .field("batch"));
    }

    let schemas = s.schemas(&project)?;
    let processor = Arc::clone(&s.processor);
    let received_at = Utc::now();
    let for_work = project.clone();
    // Parsing and processing are CPU work: keep them off the async workers.
    let processed = tokio::task::spawn_blocking(move || {
        let split = segment::split_body(&json, call.is_none()).map_err(field_error)?;
        let mut p = Processed::default();
        for (index, raw) in split.messages.iter().enumerate() {
            p.add(
                index,
                segment::parse_message(raw, call, &split.envelope).and_then(|m| {
                    let record = processor.process(&for_work, &schemas, m.event, received_at)?;
                    Ok((record, m.identity))
                }),
            );
        }
        Ok::<_, ApiError>(p)
    })
    .await
    .map_err(|e| ApiError::internal("processing the messages failed", e))??;
    let field_of = |r: &Rejection| match call {
        Some(_) => r.error.field.clone(),
        None => format!("batch[{}].{}", r.index, r.error.field),
    };
    finish_messages(
        &state,
        project,
        processed,
        field_of,
        ("success", true.into(), false.into()),
    )
    .await
}

/// Segment answers an oversized request with 400.
fn too_large(limit: usize, single: bool) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "payload_too_large",
        format!(
            "the request is larger than Segment's limit of {limit} bytes per {}",
            if single { "message" } else { "batch" }
        ),
    )
    .field("body")
}

fn field_error(e: tally_core::FieldError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, &e.code, e.message).field(e.field)
}

/// The routes, one per call.
pub(crate) fn routes() -> axum::Router<AppState> {
    use axum::routing::post;
    let route = |call: Option<Call>| {
        post(
            move |State(state): State<AppState>, headers: HeaderMap, body: Body| {
                handle(state, headers, body, call)
            },
        )
    };
    axum::Router::new()
        .route("/v1/track", route(Some(Call::Track)))
        .route("/v1/identify", route(Some(Call::Identify)))
        .route("/v1/page", route(Some(Call::Page)))
        .route("/v1/screen", route(Some(Call::Screen)))
        .route("/v1/group", route(Some(Call::Group)))
        .route("/v1/alias", route(Some(Call::Alias)))
        .route("/v1/batch", route(None))
        .route("/v1/import", route(None))
}
