//! `POST /v1/query`: the `Aggregator` over HTTP.

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tally_catalog::KeyScope;
use tally_query::{QueryRequest, QueryResponse};

use crate::auth::authorize;
use crate::error::{ApiError, parse_json};
use crate::state::AppState;

const MAX_QUERY_BODY: usize = 1 << 20;

pub(crate) async fn post_query(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<QueryResponse>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    let bytes = to_bytes(body, MAX_QUERY_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a query body is at most {MAX_QUERY_BODY} bytes"),
        )
    })?;
    let request: QueryRequest = parse_json(&bytes)?;
    Ok(Json(s.aggregator.run(&project, &request).await?))
}
