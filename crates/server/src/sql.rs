//! `POST /v1/sql`: read-only SQL over the project's events (table `events`), within limits.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use tally_catalog::KeyScope;
use tally_store::{SqlResult, StoreError};

use crate::auth::authorize;
use crate::error::{ApiError, read_json};
use crate::state::AppState;

const MAX_SQL_BODY: usize = 256 << 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    /// Fewer rows than the server's limit.
    #[serde(default)]
    max_rows: Option<usize>,
}

pub(crate) async fn post_sql(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SqlResult>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    let request: SqlRequest = read_json(body, MAX_SQL_BODY).await?;
    let mut limits = s.sql_limits;
    if let Some(n) = request.max_rows {
        limits.max_rows = n.clamp(1, limits.max_rows);
    }
    s.store
        .sql(&project, &request.sql, limits)
        .await
        .map(Json)
        .map_err(|e| match e {
            StoreError::InvalidQuery(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_sql", m).field("sql")
            }
            StoreError::ResourcesExhausted(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "resources_exhausted", m)
                    .field("sql")
            }
            other => other.into(),
        })
}
