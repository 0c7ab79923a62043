//! `/v1/dashboards`: the `DashboardManager` over HTTP (read key), widgets rendered as JSON, SVG
//! or PNG, and read-only share links (`/v1/shared/{token}`, no key: the token is the key).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tally_catalog::KeyScope;
use tally_core::time::RelativeRange;
use tally_core::{FieldError, ProjectId};
use tally_viz::{DashboardDefinition, DashboardError, SavedDashboard};

use crate::auth::authorize;
use crate::charts::{ChartFormat, chart_response};
use crate::error::{ApiError, read_json};
use crate::state::AppState;

const MAX_DASHBOARD_BODY: usize = 512 << 10;

impl From<DashboardError> for ApiError {
    fn from(e: DashboardError) -> Self {
        match e {
            DashboardError::Invalid(f) => Self::bad_request(f),
            DashboardError::NotFound { what, name } => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} `{name}` not found"),
            ),
            DashboardError::Query(q) => q.into(),
            DashboardError::Chart(c) => c.into(),
            other => Self::internal("the dashboard failed", other),
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
) -> Result<(StatusCode, Json<SavedDashboard>), ApiError> {
    let project = project(&state, &headers)?;
    let body: Value = read_json(body, MAX_DASHBOARD_BODY).await?;
    let saved = state.inner.dashboards.saved().create(&project, body)?;
    Ok((StatusCode::CREATED, Json(saved)))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let project = project(&state, &headers)?;
    let dashboards = state.inner.dashboards.saved().list(&project)?;
    Ok(Json(json!({ "dashboards": dashboards })))
}

pub(crate) async fn get_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SavedDashboard>, ApiError> {
    let project = project(&state, &headers)?;
    Ok(Json(state.inner.dashboards.saved().get(&project, &id)?))
}

pub(crate) async fn replace(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<SavedDashboard>, ApiError> {
    let project = project(&state, &headers)?;
    let body: Value = read_json(body, MAX_DASHBOARD_BODY).await?;
    Ok(Json(
        state.inner.dashboards.saved().update(&project, &id, body)?,
    ))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let project = project(&state, &headers)?;
    if state.inner.dashboards.saved().delete(&project, &id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(DashboardError::NotFound {
            what: "dashboard",
            name: id,
        }
        .into())
    }
}

/// `POST /v1/dashboards/{id}/widgets`: pins one widget (the explorer's "add to dashboard").
pub(crate) async fn add_widget(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<SavedDashboard>), ApiError> {
    let project = project(&state, &headers)?;
    let widget: Value = read_json(body, MAX_DASHBOARD_BODY).await?;
    let saved = state
        .inner
        .dashboards
        .saved()
        .add_widget(&project, &id, widget)?;
    Ok((StatusCode::CREATED, Json(saved)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WidgetParams {
    /// json (default), svg or png.
    #[serde(default)]
    format: Option<String>,
    /// Another relative range than the widget's (`past_7_days`, `today`, ...).
    #[serde(default)]
    range: Option<String>,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
    #[serde(default)]
    scale: Option<f32>,
    /// Draw the widget's title in the image (default false: the page shows it).
    #[serde(default)]
    title: Option<bool>,
}

fn range_param(range: Option<&str>) -> Result<Option<RelativeRange>, ApiError> {
    range
        .map(|r| {
            r.parse::<RelativeRange>()
                .map_err(|m| ApiError::bad_request(FieldError::new("invalid_range", "range", m)))
        })
        .transpose()
}

/// One widget of a dashboard, run now: its data as JSON, or its chart.
async fn widget_response(
    state: &AppState,
    project: &ProjectId,
    def: &DashboardDefinition,
    widget_id: &str,
    params: &WidgetParams,
) -> Result<Response, ApiError> {
    let s = &state.inner;
    let format = ChartFormat::parse(params.format.as_deref(), true)?;
    let range = range_param(params.range.as_deref())?;
    let widget = def
        .widgets
        .iter()
        .find(|w| w.id == widget_id)
        .ok_or_else(|| DashboardError::NotFound {
            what: "widget",
            name: widget_id.to_owned(),
        })?;
    let data = s
        .dashboards
        .widget_data(project, def, widget, s.reports.now(), range)
        .await?;
    if format == ChartFormat::Json {
        return Ok(Json(data).into_response());
    }
    let svg = s.dashboards.widget_svg(
        &data,
        params.width.unwrap_or(640),
        params.height.unwrap_or(320),
        params.title.unwrap_or(false),
    )?;
    chart_response(s.charts.clone(), svg, format, params.scale).await
}

/// `GET /v1/dashboards/{id}/widgets/{widget}?format=json|svg|png&range=`.
pub(crate) async fn widget(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, widget_id)): Path<(String, String)>,
    Query(params): Query<WidgetParams>,
) -> Result<Response, ApiError> {
    let project = project(&state, &headers)?;
    let saved = state.inner.dashboards.saved().get(&project, &id)?;
    widget_response(&state, &project, &saved.definition, &widget_id, &params).await
}

/// `POST /v1/widgets/preview?format=json|svg|png`: a widget that is not saved yet (the
/// explorer), with the dashboard-level `time_range` and `timezone` beside it.
pub(crate) async fn preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<WidgetParams>,
    body: Body,
) -> Result<Response, ApiError> {
    let project = project(&state, &headers)?;
    let mut widget: Value = read_json(body, MAX_DASHBOARD_BODY).await?;
    let timezone = widget
        .as_object_mut()
        .and_then(|o| o.remove("timezone"))
        .unwrap_or(Value::Null);
    let def = DashboardDefinition::from_json(
        json!({"name": "preview", "timezone": timezone, "widgets": [widget]}),
        &project,
    )
    .map_err(|mut e| {
        if let Some(rest) = e.field.strip_prefix("widgets[0]") {
            e.field = rest.trim_start_matches('.').to_owned();
        }
        ApiError::bad_request(e)
    })?;
    let id = def.widgets[0].id.clone();
    widget_response(&state, &project, &def, &id, &params).await
}

/// `POST /v1/dashboards/{id}/shares`: a new read-only link; the token is shown only now.
pub(crate) async fn create_share(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = project(&state, &headers)?;
    let created = state.inner.dashboards.saved().share(&project, &id)?;
    let path = format!("/share/{}", created.token);
    let mut body = serde_json::to_value(&created)
        .map_err(|e| ApiError::internal("serializing the share failed", e))?;
    body["path"] = Value::String(path);
    Ok((StatusCode::CREATED, Json(body)))
}

pub(crate) async fn list_shares(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = project(&state, &headers)?;
    let shares = state.inner.dashboards.saved().shares(&project, &id)?;
    Ok(Json(json!({ "shares": shares })))
}

pub(crate) async fn revoke_share(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, share_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let project = project(&state, &headers)?;
    if state
        .inner
        .dashboards
        .saved()
        .revoke(&project, &id, &share_id)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(DashboardError::NotFound {
            what: "share",
            name: share_id,
        }
        .into())
    }
}

fn shared(state: &AppState, token: &str) -> Result<(ProjectId, SavedDashboard), ApiError> {
    state
        .inner
        .dashboards
        .saved()
        .shared(token)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "share_not_found",
                "this share link does not exist or was revoked",
            )
        })
}

/// `GET /v1/shared/{token}`: the shared dashboard (read-only; its id is not shown).
pub(crate) async fn get_shared(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, saved) = shared(&state, &token)?;
    Ok(Json(json!({
        "name": saved.definition.name,
        "description": saved.definition.description,
        "time_range": saved.definition.time_range,
        "timezone": saved.definition.timezone,
        "widgets": saved.definition.widgets,
        "updated_at": saved.updated_at,
        "read_only": true,
    })))
}

/// `GET /v1/shared/{token}/widgets/{widget}?format=json|svg|png`.
pub(crate) async fn shared_widget(
    State(state): State<AppState>,
    Path((token, widget_id)): Path<(String, String)>,
    Query(params): Query<WidgetParams>,
) -> Result<Response, ApiError> {
    let (project, saved) = shared(&state, &token)?;
    widget_response(&state, &project, &saved.definition, &widget_id, &params).await
}
