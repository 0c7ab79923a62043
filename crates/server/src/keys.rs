//! `/v1/keys` (admin key): list, create, rotate and revoke the project's API keys, and set a
//! key's own request rate (`PUT /v1/keys/{id}`). Only a hash
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

/// The highest request rate a key may be given (requests per second).
const MAX_RATE_LIMIT: u32 = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    scope: String,
    /// Requests per second (0: no limit); the server's default for the scope when absent.
    #[serde(default)]
    rate_limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySettings {
    /// Requests per second (0: no limit); `null`: the server's default for the scope.
    rate_limit: Option<u32>,
}

fn check_rate(rate: Option<u32>) -> Result<Option<u32>, ApiError> {
    match rate {
        Some(r) if r > MAX_RATE_LIMIT => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_rate_limit",
            format!("a key's rate is 0 (no limit) to {MAX_RATE_LIMIT} requests per second"),
        )
        .field("rate_limit")),
        r => Ok(r),
    }
}

/// `PUT /v1/keys/{id}` `{"rate_limit": N | null}`: sets a key's own request rate.
pub(crate) async fn update_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let s = &state.inner;
    let project = crate::session::key_manager(&state, &headers)?;
    let request: KeySettings = read_json(body, 4 << 10).await?;
    let rate = check_rate(request.rate_limit)?;
    if !s
        .catalog
        .set_key_rate_limit(&project, &id, rate)
        .map_err(catalog_error)?
    {
        return Err(no_key(&id));
    }
    let key = s
        .catalog
        .list_keys(&project)
        .map_err(catalog_error)?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| no_key(&id))?;
    Ok(Json(serde_json::to_value(key).unwrap_or_default()))
}

pub(crate) async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let s = &state.inner;
    let project = crate::session::key_manager(&state, &headers)?;
    let request: NewKey = read_json(body, 4 << 10).await?;
    let rate = check_rate(request.rate_limit)?;
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
    let (mut key, secret) = s
        .catalog
        .create_key(&project, scope)
        .map_err(catalog_error)?;
    if rate.is_some() {
        s.catalog
            .set_key_rate_limit(&project, &key.id, rate)
            .map_err(catalog_error)?;
        key.rate_limit = rate;
    }
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
