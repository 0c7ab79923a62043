//! `/v1/keys` (admin key): list, create, rotate and revoke the project's API keys. Only a hash
//! of each key is stored; a new key's secret is in the answer that created it and nowhere else.
//! A revoked or rotated key stops working within 5 seconds (the key cache's lifetime).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tally_catalog::{ApiKey, KeyScope};

use crate::auth::authorize;
use crate::error::{ApiError, read_json};
use crate::state::AppState;

/// Most live keys per project.
pub(crate) const MAX_KEYS_PER_PROJECT: usize = 100;

fn catalog_error(e: tally_catalog::CatalogError) -> ApiError {
    ApiError::internal("the metadata store failed", e)
}

fn created(key: &ApiKey, secret: &str) -> Value {
    let mut v = serde_json::to_value(key).unwrap_or_default();
    v["key"] = Value::String(secret.to_owned());
    v
}

fn no_key(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "key_not_found",
        format!("the project has no live key `{id}`"),
    )
    .field("id")
}

pub(crate) async fn list_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Admin)?;
    let keys = s.catalog.list_keys(&project).map_err(catalog_error)?;
    Ok(Json(json!({ "keys": keys })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    scope: String,
}

pub(crate) async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let s = &state.inner;
    let project = crate::session::key_manager(&state, &headers)?;
    let request: NewKey = read_json(body, 4 << 10).await?;
    let scope = KeyScope::parse(&request.scope).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!(
                "unknown scope `{}`: use write, read or admin",
                request.scope
            ),
        )
        .field("scope")
    })?;
    let live = s
        .catalog
        .list_keys(&project)
        .map_err(catalog_error)?
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .count();
    if live >= MAX_KEYS_PER_PROJECT {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_keys",
            format!("a project has at most {MAX_KEYS_PER_PROJECT} live keys; revoke some first"),
        ));
    }
    let (key, secret) = s
        .catalog
        .create_key(&project, scope)
        .map_err(catalog_error)?;
    Ok((StatusCode::CREATED, Json(created(&key, &secret))))
}

pub(crate) async fn rotate_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = &state.inner;
    let project = crate::session::key_manager(&state, &headers)?;
    let (key, secret) = s
        .catalog
        .rotate_key(&project, &id)
        .map_err(catalog_error)?
        .ok_or_else(|| no_key(&id))?;
    Ok(Json(created(&key, &secret)))
}

pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let s = &state.inner;
    let project = crate::session::key_manager(&state, &headers)?;
    if !s.catalog.revoke_key(&project, &id).map_err(catalog_error)? {
        return Err(no_key(&id));
    }
    Ok(StatusCode::NO_CONTENT)
}
