//! Applying the identity changes of ingest calls, and `GET /v1/persons/{id}`,
//! `GET /v1/groups/{type}/{key}`.
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
