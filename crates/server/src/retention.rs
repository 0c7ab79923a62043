//! Retention policies: a background job (hourly, and once at start) removes each project's
//! expired events; `GET /v1/retention` (admin key) shows the policies and what a run would
//! remove now; `tally retention` sets them and runs them (also as a dry run, and at a given
//! instant).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tally_catalog::{Catalog, KeyScope};
use tally_core::ProjectId;
use tally_core::time::MaxAge;
use tally_store::{EmbeddedStore, RetentionReport, RetentionRule};

use crate::auth::authorize;
use crate::error::ApiError;
use crate::state::AppState;

/// The rules of `project`'s policies at `now`.
pub fn rules_at(
    catalog: &Catalog,
    project: &ProjectId,
    now: DateTime<Utc>,
) -> Result<Vec<RetentionRule>, tally_catalog::CatalogError> {
    Ok(catalog
        .retention_policies(project)?
        .into_iter()
        .filter_map(|p| {
            let age: MaxAge = p.max_age.parse().ok()?;
            Some(RetentionRule {
                event: p.event,
                before: age.cutoff(now).timestamp_micros(),
            })
        })
        .collect())
}

/// Applies `project`'s policies at `now` (or counts, with `dry_run`), and logs what was removed.
pub async fn run_retention(
    catalog: &Catalog,
    store: &EmbeddedStore,
    project: &ProjectId,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<RetentionReport, String> {
    let rules = rules_at(catalog, project, now).map_err(|e| e.to_string())?;
    let report = store
        .apply_retention(project, &rules, dry_run)
        .await
        .map_err(|e| e.to_string())?;
    if !dry_run && report.events_removed > 0 {
        tracing::info!(
            project = %project,
            events = report.events_removed,
            files_removed = report.files_removed,
            files_rewritten = report.files_rewritten,
            days = ?report.days,
            "retention removed expired events"
        );
    }
    Ok(report)
}

/// Every project's policies, hourly.
pub(crate) async fn run_forever(catalog: std::sync::Arc<Catalog>, store: EmbeddedStore) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let projects = match catalog.list_projects() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "retention: could not list the projects");
                continue;
            }
        };
        for p in projects {
            if let Err(e) = run_retention(&catalog, &store, &p.id, Utc::now(), false).await {
                tracing::error!(project = %p.id, error = %e, "retention failed");
            }
        }
    }
}

/// `GET /v1/retention` (admin key): the policies, and what a run now would remove.
pub(crate) async fn get_retention(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Admin)?;
    let policies = s
        .catalog
        .retention_policies(&project)
        .map_err(|e| ApiError::internal("reading the retention policies failed", e))?;
    let dry_run = run_retention(&s.catalog, &s.store, &project, Utc::now(), true)
        .await
        .map_err(|e| ApiError::internal("the retention dry run failed", e))?;
    Ok(Json(json!({"policies": policies, "dry_run": dry_run})))
}
