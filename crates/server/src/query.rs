//! `POST /v1/query`: the `Aggregator` over HTTP.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use tally_catalog::KeyScope;
use tally_query::{QueryRequest, QueryResponse};

use crate::auth::authorize;
use crate::error::{ApiError, read_json};
use crate::state::AppState;

const MAX_QUERY_BODY: usize = 1 << 20;

pub(crate) async fn post_query(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<QueryResponse>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    let request: QueryRequest = read_json(body, MAX_QUERY_BODY).await?;
    Ok(Json(s.aggregator.run(&project, &request).await?))
}
