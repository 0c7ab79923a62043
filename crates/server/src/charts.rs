//! `POST /v1/charts?format=svg|png`: a query's result drawn by the `ChartGenerator`.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tally_catalog::KeyScope;
use tally_core::time::TimeRangeSpec;
use tally_core::{FieldError, TimeRange};
use tally_query::{QueryItem, QueryRequest};
use tally_viz::{ChartError, ChartKind, ChartOptions};

use crate::auth::authorize;
use crate::error::{ApiError, read_json};
use crate::state::AppState;

const MAX_CHART_BODY: usize = 64 << 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChartRequest {
    #[serde(rename = "type")]
    kind: ChartKind,
    time_range: TimeRangeSpec,
    query: QueryItem,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChartParams {
    #[serde(default)]
    format: Option<String>,
    /// PNG pixels per SVG unit (1 to 4; default 2 for sharp text).
    #[serde(default)]
    scale: Option<f32>,
}

impl From<ChartError> for ApiError {
    fn from(e: ChartError) -> Self {
        use axum::http::StatusCode;
        match e {
            ChartError::Shape(m) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_chart", m).field("type")
            }
            ChartError::Size => Self::new(StatusCode::BAD_REQUEST, "invalid_size", e.to_string()),
            ChartError::Raster(m) => Self::internal("rasterizing the chart failed", m),
        }
    }
}

/// What a chart endpoint answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChartFormat {
    /// The data the chart would draw (dashboard widgets only).
    Json,
    Svg,
    Png,
}

impl ChartFormat {
    /// `format` as given, `svg` by default (`json` by default where `json` is allowed).
    pub(crate) fn parse(format: Option<&str>, json: bool) -> Result<Self, ApiError> {
        match (format, json) {
            (None, true) | (Some("json"), true) => Ok(Self::Json),
            (None, false) | (Some("svg"), _) => Ok(Self::Svg),
            (Some("png"), _) => Ok(Self::Png),
            (Some(other), _) => Err(ApiError::bad_request(FieldError::new(
                "invalid_format",
                "format",
                format!(
                    "unknown format `{other}`: use {}svg or png",
                    if json { "json, " } else { "" }
                ),
            ))),
        }
    }
}

/// An SVG chart answered as SVG, or rasterized to PNG at `scale` (1 to 4, default 2).
pub(crate) async fn chart_response(
    charts: tally_viz::ChartGenerator,
    svg: String,
    format: ChartFormat,
    scale: Option<f32>,
) -> Result<Response, ApiError> {
    let scale = scale.unwrap_or(2.0);
    if !(1.0..=4.0).contains(&scale) {
        return Err(ApiError::bad_request(FieldError::new(
            "invalid_scale",
            "scale",
            "between 1 and 4",
        )));
    }
    let (ctype, bytes) = if format == ChartFormat::Png {
        // Rasterizing takes milliseconds of CPU: off the async workers.
        let png = tokio::task::spawn_blocking(move || charts.png(&svg, scale))
            .await
            .map_err(|e| ApiError::internal("the chart task failed", e))??;
        ("image/png", png)
    } else {
        ("image/svg+xml", svg.into_bytes())
    };
    let mut r = bytes.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(r)
}

pub(crate) async fn post_chart(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<ChartParams>,
    body: Body,
) -> Result<Response, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    let request: ChartRequest = read_json(body, MAX_CHART_BODY).await?;
    let format = ChartFormat::parse(params.format.as_deref(), false)?;
    let range =
        TimeRange::from_spec(&request.time_range, "time_range").map_err(ApiError::bad_request)?;
    let name = request.query.name().to_owned();
    let query = QueryRequest {
        time_range: request.time_range,
        rules: vec![request.query],
        exact: false,
    };
    let mut response = s.aggregator.run(&project, &query).await?;
    let table = response
        .results
        .remove(&name)
        .unwrap_or_else(|| tally_store::ResultTable {
            columns: Vec::new(),
            rows: Vec::new(),
        });
    let options = ChartOptions {
        width: request.width.unwrap_or(640),
        height: request.height.unwrap_or(320),
        title: request.title,
        timezone: range.timezone,
    };
    let svg = s.charts.svg(request.kind, &table, &options)?;
    chart_response(s.charts.clone(), svg, format, params.scale).await
}
