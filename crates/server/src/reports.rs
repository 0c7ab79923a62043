//! `/v1/reports`: report definitions, rendering on demand, sending now, and run history.
//!
//! The `ReportScheduler` (started by `serve`) runs them on their schedules; the catalog is the
//! source of truth, so reports the CLI saves are scheduled too.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use tally_catalog::KeyScope;
use tally_core::time::parse_rfc3339;
use tally_core::{FieldError, ProjectId};
use tally_report::render;
use tally_report::{RenderedReport, ReportError, RunView, SavedReport};

use crate::auth::authorize;
use crate::error::{ApiError, read_json};
use crate::state::AppState;

const MAX_REPORT_BODY: usize = 256 << 10;
const MAX_RUNS_LISTED: u32 = 200;

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Invalid(f) => Self::bad_request(f),
            ReportError::Query(q) => q.into(),
            ReportError::Catalog(tally_catalog::CatalogError::NotFound { what, name }) => {
                Self::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("{what} `{name}` not found"),
                )
            }
            ReportError::Chart(tally_viz::ChartError::Shape(m)) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_chart", m)
            }
            other => Self::internal("the report failed", other),
        }
    }
}

fn project(state: &AppState, headers: &HeaderMap) -> Result<ProjectId, ApiError> {
    let s = &state.inner;
    authorize(&s.keys, &s.catalog, headers, KeyScope::Read)
}

pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<SavedReport>), ApiError> {
    let project = project(&state, &headers)?;
    let body: Value = read_json(body, MAX_REPORT_BODY).await?;
    let s = &state.inner;
    let saved = tally_report::create_report(&s.catalog, &project, body, s.reports.now())?;
    Ok((StatusCode::CREATED, Json(saved)))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let project = project(&state, &headers)?;
    let rows = state
        .inner
        .catalog
        .reports(&project)
        .map_err(ReportError::from)?;
    let reports = rows
        .iter()
        .map(SavedReport::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "reports": reports })))
}

pub(crate) async fn get_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SavedReport>, ApiError> {
    let project = project(&state, &headers)?;
    let row = state
        .inner
        .catalog
        .report(&project, &id)
        .map_err(ReportError::from)?;
    Ok(Json(SavedReport::from_row(&row)?))
}

pub(crate) async fn replace(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<SavedReport>, ApiError> {
    let project = project(&state, &headers)?;
    let body: Value = read_json(body, MAX_REPORT_BODY).await?;
    let s = &state.inner;
    Ok(Json(tally_report::update_report(
        &s.catalog,
        &project,
        &id,
        body,
        s.reports.now(),
    )?))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let project = project(&state, &headers)?;
    if state
        .inner
        .catalog
        .delete_report(&project, &id)
        .map_err(ReportError::from)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("report `{id}` not found"),
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenderParams {
    /// json (default), csv, zip or html.
    #[serde(default)]
    format: Option<String>,
    /// With `format=csv`: only this section (1-based).
    #[serde(default)]
    section: Option<usize>,
    /// The instant to resolve the range against (default now).
    #[serde(default)]
    at: Option<String>,
    /// Count only events received before this instant (default `at`).
    #[serde(default)]
    watermark: Option<String>,
}

fn instant_param(
    v: Option<&str>,
    field: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    v.map(|s| {
        parse_rfc3339(s).ok_or_else(|| {
            ApiError::bad_request(FieldError::new(
                "invalid_timestamp",
                field,
                "must be an RFC 3339 timestamp such as 2026-11-23T08:00:00Z",
            ))
        })
    })
    .transpose()
}

/// A rendered report in the format asked for.
fn rendered(
    state: &AppState,
    report: &RenderedReport,
    params: &RenderParams,
) -> Result<Response, ApiError> {
    let format = params.format.as_deref().unwrap_or("json");
    let r = render::render(report, format, params.section, &state.inner.charts)?;
    let mut response = r.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    if let Some(d) = r
        .file_name
        .and_then(|f| HeaderValue::from_str(&format!("attachment; filename=\"{f}\"")).ok())
    {
        headers.insert(header::CONTENT_DISPOSITION, d);
    }
    Ok(response)
}

/// `POST /v1/reports/{id}/run?format=json|csv|zip|html[&at=...&watermark=...]`: renders now.
pub(crate) async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<RenderParams>,
) -> Result<Response, ApiError> {
    let project = project(&state, &headers)?;
    let s = &state.inner;
    let (row, def) = tally_report::load_report(&s.catalog, &project, &id)?;
    let now = s.reports.now();
    let at = instant_param(params.at.as_deref(), "at")?.unwrap_or(now);
    let watermark = instant_param(params.watermark.as_deref(), "watermark")?.unwrap_or(at.min(now));
    let report = s
        .reports
        .generator()
        .generate(&project, &row.id, &def, at, watermark)
        .await?;
    rendered(&state, &report, &params)
}

/// `POST /v1/reports/{id}/send`: records a run for now; the scheduler renders and delivers it
/// within a second. Answers the run (poll `/runs/{run}` for its outcome).
pub(crate) async fn send(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let project = project(&state, &headers)?;
    let s = &state.inner;
    let run_id = tally_report::record_manual_run(&s.catalog, &project, &id, s.reports.now())?;
    let run = s.catalog.run(&id, &run_id).map_err(ReportError::from)?;
    Ok((StatusCode::ACCEPTED, Json(RunView::from(&run))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunsParams {
    #[serde(default)]
    limit: Option<u32>,
}

pub(crate) async fn runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<RunsParams>,
) -> Result<Json<Value>, ApiError> {
    let project = project(&state, &headers)?;
    let limit = params.limit.unwrap_or(50).clamp(1, MAX_RUNS_LISTED);
    let runs = tally_report::runs(&state.inner.catalog, &project, &id, limit)?;
    Ok(Json(serde_json::json!({ "runs": runs })))
}

/// `GET /v1/reports/{id}/runs/{run}`: the run; with `format`, the output it delivered.
pub(crate) async fn get_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, run_id)): Path<(String, String)>,
    Query(params): Query<RenderParams>,
) -> Result<Response, ApiError> {
    let project = project(&state, &headers)?;
    let s = &state.inner;
    s.catalog.report(&project, &id).map_err(ReportError::from)?;
    let run = s.catalog.run(&id, &run_id).map_err(ReportError::from)?;
    if params.format.is_none() {
        return Ok(Json(RunView::from(&run)).into_response());
    }
    let Some(output) = &run.output else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_rendered",
            format!("run `{run_id}` has no output (status {})", run.status),
        ));
    };
    let report: RenderedReport = serde_json::from_str(output).map_err(ReportError::from)?;
    rendered(&state, &report, &params)
}
