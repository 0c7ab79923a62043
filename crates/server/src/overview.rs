//! `GET /v1/overview` (the web UI's front page as JSON) and `GET /v1/overview/stream`, the same
//! as server-sent events: one `overview` event at once, then one whenever it changes (checked
//! every [`PUSH_EVERY`]), with keep-alive comments in between.
//!
//! Overviews are cached per (project, range, zone) for [`CACHE_TTL`], so any number of open
//! pages cost one computation per project every couple of seconds.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono_tz::Tz;
use futures::Stream;
use parking_lot::Mutex;
use serde::Deserialize;
use tally_catalog::KeyScope;
use tally_core::time::RelativeRange;
use tally_core::{FieldError, ProjectId};
use tally_query::Overview;

use crate::auth::authorize;
use crate::error::ApiError;
use crate::state::AppState;

/// How often an open stream checks for a change.
pub(crate) const PUSH_EVERY: Duration = Duration::from_secs(3);
/// How long a computed overview is served to every page asking for it.
const CACHE_TTL: Duration = Duration::from_secs(2);
const MAX_CACHED: usize = 1000;

type CacheKey = (ProjectId, RelativeRange, Tz);

#[derive(Debug, Default)]
pub(crate) struct OverviewCache {
    entries: Mutex<HashMap<CacheKey, (Instant, Arc<Overview>)>>,
}

impl OverviewCache {
    /// Drops the project's cached overviews (after an erasure, say).
    pub(crate) fn forget(&self, project: &ProjectId) {
        self.entries.lock().retain(|(p, _, _), _| p != project);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverviewParams {
    /// A relative range (default `past_7_days`).
    #[serde(default)]
    range: Option<String>,
    /// IANA zone of "today", "this week" and the buckets (default UTC).
    #[serde(default)]
    timezone: Option<String>,
}

impl OverviewParams {
    fn parse(&self) -> Result<(RelativeRange, Tz), ApiError> {
        let range = match &self.range {
            None => RelativeRange::PastDays(7),
            Some(r) => r
                .parse()
                .map_err(|m| ApiError::bad_request(FieldError::new("invalid_range", "range", m)))?,
        };
        let tz = match &self.timezone {
            None => Tz::UTC,
            Some(t) => t.parse().map_err(|_| {
                ApiError::bad_request(FieldError::new(
                    "invalid_timezone",
                    "timezone",
                    format!("unknown IANA time zone `{t}`"),
                ))
            })?,
        };
        Ok((range, tz))
    }
}

async fn overview(state: &AppState, key: CacheKey) -> Result<Arc<Overview>, ApiError> {
    let s = &state.inner;
    if let Some((at, o)) = s.overviews.entries.lock().get(&key)
        && at.elapsed() < CACHE_TTL
    {
        return Ok(Arc::clone(o));
    }
    let (project, range, tz) = &key;
    let o =
        Arc::new(Overview::compute(&s.aggregator, project, *range, *tz, s.reports.now()).await?);
    let mut entries = s.overviews.entries.lock();
    if entries.len() >= MAX_CACHED {
        entries.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
    }
    entries.insert(key, (Instant::now(), Arc::clone(&o)));
    Ok(o)
}

pub(crate) async fn get_overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<OverviewParams>,
) -> Result<Json<Overview>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    let (range, tz) = params.parse()?;
    let o = overview(&state, (project, range, tz)).await?;
    Ok(Json(Overview::clone(&o)))
}

/// The overview's figures without the instant they were computed at (to see a change).
fn figures(o: &Overview) -> String {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("generated_at");
    }
    v.to_string()
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<OverviewParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    let (range, tz) = params.parse()?;
    let key = (project, range, tz);
    // The first answer is computed now, so a bad request fails as a plain error.
    let first = overview(&state, key.clone()).await?;
    let events = futures::stream::unfold(
        (state, key, Some(first), String::new(), headers),
        |(state, key, mut next, mut last, headers)| async move {
            loop {
                let o = match next.take() {
                    Some(o) => Ok(o),
                    None => {
                        tokio::time::sleep(PUSH_EVERY).await;
                        // Every push is checked again (without spending the key's request
                        // budget): a revoked key, an ended session or a removed role ends the
                        // stream; a passing failure (the catalog busy) does not.
                        let s = &state.inner;
                        match crate::auth::identify(&s.keys, &s.catalog, &headers) {
                            Ok((p, scope)) if p == key.0 && scope != KeyScope::Write => {}
                            Ok(_) => return None,
                            Err(e) if matches!(e.status.as_u16(), 401 | 403) => return None,
                            Err(_) => {}
                        }
                        overview(&state, key.clone()).await
                    }
                };
                let event = match o {
                    Ok(o) => {
                        let f = figures(&o);
                        if f == last {
                            continue;
                        }
                        last = f;
                        Event::default()
                            .event("overview")
                            .json_data(&*o)
                            .unwrap_or_else(|_| Event::default().comment("unserializable"))
                    }
                    // A failed refresh is told to the page, which keeps what it shows.
                    Err(e) => Event::default()
                        .event("error")
                        .json_data(e.body())
                        .unwrap_or_else(|_| Event::default().comment("error")),
                };
                return Some((Ok(event), (state, key, None, last, headers)));
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
