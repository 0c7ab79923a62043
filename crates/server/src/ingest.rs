//! `POST /v1/events`: decode, parse each event on its own, process, queue, and answer once the
//! accepted events are durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use tally_catalog::KeyScope;
use tally_collect::{EventSink, SinkError, SubmitError, Weighted, body, native};
use tally_core::{EventRecord, FieldError, IdentityOp, ProjectId};
use tally_store::{ProjectBatch, Store, StoreError};
use tokio::sync::OwnedSemaphorePermit;

use crate::auth::authorize;
use crate::error::ApiError;
use crate::state::AppState;

/// One project's processed events, as queued in the `EventManager`.
#[derive(Debug)]
pub struct IngestBatch(pub ProjectBatch);

impl Weighted for IngestBatch {
    fn weight(&self) -> usize {
        self.0.records.len()
    }
}

/// Writes queued groups to the store, one project batch per project.
#[derive(Debug)]
pub(crate) struct StoreSink {
    store: Arc<dyn Store>,
}

impl StoreSink {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

impl EventSink<IngestBatch> for StoreSink {
    async fn write(&mut self, items: Vec<IngestBatch>) -> Result<(), SinkError> {
        let mut by_project: HashMap<ProjectId, Vec<EventRecord>> = HashMap::new();
        for IngestBatch(b) in items {
            by_project.entry(b.project).or_default().extend(b.records);
        }
        let batches = by_project
            .into_iter()
            .map(|(project, records)| ProjectBatch { project, records })
            .collect();
        match self.store.write(batches).await {
            Ok(_) => Ok(()),
            Err(StoreError::Overloaded(m)) => Err(SinkError {
                overloaded: true,
                message: m,
            }),
            Err(e) => Err(SinkError {
                overloaded: false,
                message: e.to_string(),
            }),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Rejection {
    pub(crate) index: usize,
    pub(crate) error: FieldError,
}

#[derive(Debug, Serialize)]
struct IngestAnswer {
    accepted: usize,
    rejected: Vec<Rejection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<serde_json::Value>,
}

/// Reads a body within the configured limits, holding room for it in the bytes-in-flight
/// budget (503 without room) until the returned permit is dropped.
pub(crate) async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, OwnedSemaphorePermit), ApiError> {
    let s = &state.inner;
    let limits = s.limits;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {} bytes", limits.max_body_bytes),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(too_large());
    }
    // Room for this body in memory, or 503: bounded memory however many clients send at once.
    let reserve = declared
        .unwrap_or(limits.max_body_bytes)
        .clamp(1, limits.max_body_bytes);
    let permit = Arc::clone(&s.inflight_bytes)
        .try_acquire_many_owned(reserve as u32)
        .map_err(|_| {
            s.counters.overloaded.fetch_add(1, Ordering::Relaxed);
            ApiError::overloaded("too many requests are being processed; retry shortly")
        })?;
    let bytes = to_bytes(body, limits.max_body_bytes)
        .await
        .map_err(|_| too_large())?;
    Ok((bytes, permit))
}

/// The request's `Content-Encoding`, if any.
pub(crate) fn content_encoding(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Queues processed records and waits until they are durable; counts them.
pub(crate) async fn submit(
    state: &AppState,
    project: ProjectId,
    records: Vec<EventRecord>,
    rejected: usize,
) -> Result<(), ApiError> {
    let s = &state.inner;
    let accepted = records.len();
    if accepted > 0 {
        s.manager
            .submit(vec![IngestBatch(ProjectBatch { project, records })])
            .await
            .map_err(|e| match e {
                SubmitError::Overloaded => {
                    s.counters.overloaded.fetch_add(1, Ordering::Relaxed);
                    ApiError::overloaded("Tally cannot keep up right now; retry shortly")
                }
                SubmitError::TooLarge(n) => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_events",
                    format!("{n} events do not fit in the ingest queue"),
                ),
                SubmitError::Closed => ApiError::overloaded("Tally is shutting down"),
                SubmitError::Sink(e) => ApiError::internal("storing the events failed", e),
            })?;
    }
    s.counters
        .accepted
        .fetch_add(accepted as u64, Ordering::Relaxed);
    s.counters
        .rejected
        .fetch_add(rejected as u64, Ordering::Relaxed);
    Ok(())
}

/// The messages of one request to a client API (Segment's, PostHog's), processed: records to
/// store, the identity changes they ask for, and the ones refused.
#[derive(Debug, Default)]
pub(crate) struct Processed {
    pub(crate) records: Vec<EventRecord>,
    pub(crate) identity: Vec<IdentityOp>,
    pub(crate) rejected: Vec<Rejection>,
    /// Acknowledged and not stored (sent without consent in a project that drops those).
    pub(crate) dropped: usize,
}

impl Processed {
    /// Keeps message `index`'s outcome.
    pub(crate) fn add(
        &mut self,
        index: usize,
        outcome: Result<(Option<EventRecord>, Vec<IdentityOp>), FieldError>,
    ) {
        match outcome {
            Ok((Some(record), ops)) => {
                // Without consent, no identity change either.
                if !record.is_personless() {
                    self.identity.extend(ops);
                }
                self.records.push(record);
            }
            Ok((None, _)) => self.dropped += 1,
            Err(error) => self.rejected.push(Rejection { index, error }),
        }
    }
}

/// Stores what a client API request had acceptable (identity changes first, then the events;
/// both durable when this answers) and answers `{MARKER, "accepted", "rejected"}`: 200 with the
/// marker's success value, or 400 naming the first problem (`field_of`) when nothing was
/// acceptable. `marker` is the client API's own success field and its two values.
pub(crate) async fn finish_messages(
    state: &AppState,
    project: ProjectId,
    p: Processed,
    field_of: impl Fn(&Rejection) -> String,
    marker: (&str, serde_json::Value, serde_json::Value),
) -> Result<Response, ApiError> {
    let (key, ok, failed) = marker;
    let accepted = p.records.len() + p.dropped;
    let mut answer = serde_json::Map::new();
    if accepted == 0 && !p.rejected.is_empty() {
        state
            .inner
            .counters
            .rejected
            .fetch_add(p.rejected.len() as u64, Ordering::Relaxed);
        let first = &p.rejected[0];
        answer.insert(key.into(), failed);
        answer.insert(
            "error".into(),
            serde_json::json!({
                "code": "all_events_rejected",
                "message": format!("nothing was accepted; the first problem: {}", first.error),
                "field": field_of(first).trim_end_matches('.'),
            }),
        );
        answer.insert("accepted".into(), 0.into());
        answer.insert(
            "rejected".into(),
            serde_json::to_value(&p.rejected).unwrap_or_default(),
        );
        return Ok((StatusCode::BAD_REQUEST, Json(answer)).into_response());
    }
    crate::identity::apply(state, &project, p.identity).await?;
    submit(state, project, p.records, p.rejected.len()).await?;
    answer.insert(key.into(), ok);
    answer.insert("accepted".into(), accepted.into());
    answer.insert(
        "rejected".into(),
        serde_json::to_value(&p.rejected).unwrap_or_default(),
    );
    Ok((StatusCode::OK, Json(answer)).into_response())
}

pub(crate) async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Write)?;
    let limits = s.limits;
    let (bytes, _memory) = read_body(&state, &headers, body).await?;
    let encoding = content_encoding(&headers);
    let schemas = s.schemas(&project)?;
    let processor = Arc::clone(&s.processor);
    let received_at = Utc::now();
    let project_for_work = project.clone();

    // Decoding and processing are CPU work: keep them off the async workers.
    let (records, rejected, dropped) =
        tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let json =
                body::decode_encoding(&bytes, encoding.as_deref(), &limits).map_err(body_error)?;
            let raws = body::split_events(&json, &limits).map_err(body_error)?;
            let mut records = Vec::with_capacity(raws.len());
            let mut rejected = Vec::new();
            let mut dropped = 0;
            for (index, raw) in raws.into_iter().enumerate() {
                let result = native::parse_event(raw, limits.max_event_bytes)
                    .and_then(|ev| processor.process(&project_for_work, &schemas, ev, received_at));
                match result {
                    Ok(Some(r)) => records.push(r),
                    Ok(None) => dropped += 1,
                    Err(error) => rejected.push(Rejection { index, error }),
                }
            }
            Ok((records, rejected, dropped))
        })
        .await
        .map_err(|e| ApiError::internal("processing the events failed", e))??;

    let accepted = records.len() + dropped;
    let merges = records
        .iter()
        .filter_map(|r| IdentityOp::implied_by(r.user_id.as_deref(), r.anonymous_id.as_deref()))
        .collect();
    crate::identity::apply(&state, &project, merges).await?;
    submit(&state, project, records, rejected.len()).await?;

    let all_rejected = accepted == 0 && !rejected.is_empty();
    let answer = IngestAnswer {
        accepted,
        error: all_rejected.then(|| {
            let first = &rejected[0].error;
            serde_json::json!({
                "code": "all_events_rejected",
                "message": format!("no event was accepted; the first problem: {}", first),
                "field": format!("events[{}].{}", rejected[0].index, first.field),
            })
        }),
        rejected,
    };
    let status = if all_rejected {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer)).into_response())
}

pub(crate) fn body_error(e: body::BodyError) -> ApiError {
    let status = match e {
        body::BodyError::TooLarge { .. } | body::BodyError::TooManyEvents { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        body::BodyError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.code(), e.to_string()).field("body")
}
