//! Applying the identity changes of ingest calls, and `GET /v1/persons/{id}`,
//! `GET /v1/persons/{id}/export` (right of access), `DELETE /v1/persons/{id}` (right to
//! erasure), `GET /v1/audit`, `GET /v1/groups/{type}/{key}`.
//!
//! Browser and mobile clients send both an anonymous id and a user id with every event after a
//! login, so the same implicit merge arrives again and again: merges already applied are
//! remembered (a bounded set) and not written again.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tally_catalog::{KeyScope, MergeOutcome};
use tally_core::{IdentityOp, ProjectId};

use crate::auth::authorize;
use crate::error::ApiError;
use crate::state::AppState;

const MAX_REMEMBERED: usize = 100_000;

/// Implicit merges already applied (or refused), by project, from and into.
#[derive(Debug, Default)]
pub(crate) struct SeenMerges(Mutex<HashSet<(ProjectId, String, String)>>);

impl SeenMerges {
    /// Forgets the merges that involve one of `ids`, so they are applied again if they recur.
    fn forget(&self, project: &ProjectId, ids: &[String]) {
        self.0
            .lock()
            .retain(|(p, from, into)| p != project || !(ids.contains(from) || ids.contains(into)));
    }
}

/// Applies `ops` in order, durably; returns when they are committed.
pub(crate) async fn apply(
    state: &AppState,
    project: &ProjectId,
    ops: Vec<IdentityOp>,
) -> Result<(), ApiError> {
    let s = &state.inner;
    let mut ops = ops;
    s.processor.scrub_identity(&mut ops);
    let ops: Vec<IdentityOp> = {
        let seen = s.seen_merges.0.lock();
        let mut in_this_call = HashSet::new();
        ops.into_iter()
            .filter(|op| match op {
                IdentityOp::Merge {
                    from,
                    into,
                    explicit: false,
                } => {
                    let k = (project.clone(), from.clone(), into.clone());
                    !seen.contains(&k) && in_this_call.insert(k)
                }
                _ => true,
            })
            .collect()
    };
    if ops.is_empty() {
        return Ok(());
    }
    let catalog = std::sync::Arc::clone(&s.catalog);
    let p = project.clone();
    let (ops, outcomes) = tokio::task::spawn_blocking(move || {
        let outcomes = catalog.apply_identity(&p, &ops);
        (ops, outcomes)
    })
    .await
    .map_err(|e| ApiError::internal("applying identity changes failed", e))?;
    let outcomes =
        outcomes.map_err(|e| ApiError::internal("applying identity changes failed", e))?;
    let mut seen = s.seen_merges.0.lock();
    if seen.len() + ops.len() > MAX_REMEMBERED {
        seen.clear();
    }
    for (op, outcome) in ops.iter().zip(&outcomes) {
        if let IdentityOp::Merge {
            from,
            into,
            explicit: false,
        } = op
        {
            if let MergeOutcome::Refused(why) = outcome {
                tracing::debug!(project = %project, %why, "implicit merge refused");
            }
            seen.insert((project.clone(), from.clone(), into.clone()));
        }
    }
    Ok(())
}

/// `GET /v1/persons/{id}` (read key): the person an id belongs to, with every id and property.
pub(crate) async fn get_person(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    let person = s
        .catalog
        .person(&project, &id)
        .map_err(|e| ApiError::internal("reading the person failed", e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no person with id `{id}` has properties or other ids"),
            )
            .field("id")
        })?;
    Ok(Json(json!({
        "id": person.id,
        "distinct_ids": person.distinct_ids,
        "properties": person.properties,
        "identified": person.identified,
        "created_at": person.created_at,
        "updated_at": person.updated_at,
    })))
}

/// Most events one export returns; a person with more gets 422 `export_too_large`.
pub(crate) const MAX_EXPORT_EVENTS: usize = 100_000;

/// `GET /v1/persons/{id}/export` (admin key): everything stored about the person that `id`
/// belongs to: its ids, properties and every event of any of its ids, as JSON.
pub(crate) async fn export_person(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Admin)?;
    let person = s
        .catalog
        .person(&project, &id)
        .map_err(|e| ApiError::internal("reading the person failed", e))?;
    let person_id = person.as_ref().map_or(id.as_str(), |p| p.id.as_str());
    let sql = format!(
        "SELECT * FROM events WHERE person_id = '{}' ORDER BY timestamp, received_at",
        person_id.replace('\'', "''")
    );
    let limits = tally_store::SqlLimits {
        max_rows: MAX_EXPORT_EVENTS,
        ..s.sql_limits
    };
    let result = s
        .store
        .sql(&project, &sql, limits)
        .await
        .map_err(|e| match e {
            tally_store::StoreError::ResourcesExhausted(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "resources_exhausted", m)
            }
            other => other.into(),
        })?;
    if result.truncated {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "export_too_large",
            format!(
                "the person has more than {MAX_EXPORT_EVENTS} events; export them with `POST /v1/sql` in ranges"
            ),
        ));
    }
    if person.is_none() && result.rows.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("nothing is stored about `{id}`"),
        )
        .field("id"));
    }
    // Events as objects, their JSON columns as JSON.
    let events: Vec<Value> = result
        .rows
        .into_iter()
        .map(|row| {
            let mut event = serde_json::Map::new();
            for (column, value) in result.columns.iter().zip(row) {
                let value = match (column.as_str(), value) {
                    ("properties" | "context_extra", Value::String(text)) => {
                        serde_json::from_str(&text).unwrap_or(Value::String(text))
                    }
                    (_, v) => v,
                };
                event.insert(column.clone(), value);
            }
            Value::Object(event)
        })
        .collect();
    Ok(Json(json!({
        "id": person_id,
        "distinct_ids": person.as_ref().map_or_else(|| vec![person_id.to_owned()], |p| p.distinct_ids.clone()),
        "properties": person.as_ref().map(|p| Value::Object(p.properties.clone())),
        "identified": person.as_ref().is_some_and(|p| p.identified),
        "created_at": person.as_ref().and_then(|p| p.created_at.clone()),
        "updated_at": person.as_ref().and_then(|p| p.updated_at.clone()),
        "events": events,
        "exported_at": tally_core::time::format_rfc3339(chrono::Utc::now()),
    })))
}

/// `DELETE /v1/persons/{id}` (admin key): erases the person `id` belongs to, with all its ids,
/// everywhere (see `EmbeddedStore::erase_person`), and answers the counts, which the audit log
/// also records.
pub(crate) async fn erase_person(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Admin)?;
    if id.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "the person id must not be empty",
        )
        .field("id"));
    }
    let actor = crate::auth::actor(&s.catalog, &headers);
    // The whole erasure, the server's own memory included, runs to its end even if the
    // client gives up waiting.
    let st = state.clone();
    let erasure = tokio::spawn(async move {
        let s = &st.inner;
        let erasure = s.store.erase_person(&project, &id, &actor).await?;
        s.processor.forget_person(&project, &erasure.erased_ids);
        s.seen_merges.forget(&project, &erasure.erased_ids);
        s.overviews.forget(&project);
        Ok::<_, tally_store::StoreError>(erasure)
    })
    .await
    .map_err(|e| ApiError::internal("the erasure failed", e))??;
    let body = serde_json::to_value(&erasure)
        .map_err(|e| ApiError::internal("encoding the answer failed", e))?;
    Ok(Json(body))
}

/// How many audit entries `GET /v1/audit` returns at most.
const MAX_AUDIT_ENTRIES: usize = 1000;

/// `GET /v1/audit` (admin key): the project's audit log, newest first.
pub(crate) async fn audit_log(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Admin)?;
    let entries = s
        .catalog
        .audit_log(&project, MAX_AUDIT_ENTRIES)
        .map_err(|e| ApiError::internal("reading the audit log failed", e))?;
    Ok(Json(json!({ "entries": entries })))
}

/// `GET /v1/groups/{type}/{key}` (read key): a group's properties.
pub(crate) async fn get_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((group_type, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    let group = s
        .catalog
        .group(&project, &group_type, &key)
        .map_err(|e| ApiError::internal("reading the group failed", e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no group `{group_type}`/`{key}`"),
            )
            .field("key")
        })?;
    Ok(Json(json!({
        "type": group.group_type,
        "key": group.key,
        "properties": group.properties,
        "created_at": group.created_at,
        "updated_at": group.updated_at,
    })))
}
