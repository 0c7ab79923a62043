//! `/v1/rules`: saved aggregation rules, each kept live as a rollup by the store.
//!
//! The catalog is the source of truth (the CLI writes there too); [`sync`] makes the store's
//! rollups match it, at start and every few seconds.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use tally_catalog::{Catalog, KeyScope, SavedRule};
use tally_core::ProjectId;
use tally_query::AggregationRule;
use tally_query::{OVERVIEW_ROLLUP_PREFIX as ROLLUP_PREFIX, Overview};
use tally_store::{RollupStatus, Store};

use crate::auth::authorize;
use crate::error::{ApiError, read_json};
use crate::state::AppState;

const MAX_RULE_BODY: usize = 64 << 10;
/// Saved rules' names may not start with this: Tally's own rollups' ids do (e.g.
/// [`ROLLUP_PREFIX`]).
const RESERVED_PREFIX: &str = "$";
const _: () = assert!(ROLLUP_PREFIX.as_bytes()[0] == RESERVED_PREFIX.as_bytes()[0]);

/// At most this many saved rules per project.
pub(crate) const MAX_RULES_PER_PROJECT: usize = 200;

/// A saved rule as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct RuleView {
    name: String,
    rule: AggregationRule,
    rollup: RollupStatus,
    created_at: String,
    updated_at: String,
}

fn view(store: &dyn Store, saved: &SavedRule) -> Option<RuleView> {
    let rule: AggregationRule = serde_json::from_str(&saved.rule_json).ok()?;
    let rollup = match rule.rollup_def(&saved.project).map(|d| d.supported()) {
        Ok(Ok(())) => store
            .rollup_status(&saved.project, &saved.name)
            .unwrap_or_else(|| RollupStatus {
                state: "building".into(),
                cells: 0,
                error: None,
            }),
        Ok(Err(why)) | Err(tally_core::FieldError { message: why, .. }) => RollupStatus {
            state: "unsupported".into(),
            cells: 0,
            error: Some(why),
        },
    };
    Some(RuleView {
        name: saved.name.clone(),
        rule,
        rollup,
        created_at: saved.created_at.clone(),
        updated_at: saved.updated_at.clone(),
    })
}

fn catalog_error(e: tally_catalog::CatalogError) -> ApiError {
    ApiError::internal("the metadata store failed", e)
}

/// Why a rule was not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveRuleError {
    /// The rule is invalid (the error names the field).
    #[error("{}: {} ({})", .0.field, .0.message, .0.code)]
    Invalid(tally_core::FieldError),
    #[error(transparent)]
    Catalog(#[from] tally_catalog::CatalogError),
}

/// Validates and saves a rule; true when it replaced one. Shared by the API and the CLI.
pub fn save_rule(
    catalog: &Catalog,
    project: &ProjectId,
    rule: &AggregationRule,
) -> Result<bool, SaveRuleError> {
    rule.rollup_def(project).map_err(SaveRuleError::Invalid)?;
    if rule.name.starts_with(RESERVED_PREFIX) {
        return Err(SaveRuleError::Invalid(tally_core::FieldError::new(
            "invalid_name",
            "name",
            format!("rule names starting with `{RESERVED_PREFIX}` are Tally's own"),
        )));
    }
    let existing = catalog.rules(Some(project))?;
    if existing.len() >= MAX_RULES_PER_PROJECT && !existing.iter().any(|r| r.name == rule.name) {
        return Err(SaveRuleError::Invalid(tally_core::FieldError::new(
            "too_many_rules",
            "name",
            format!("a project keeps at most {MAX_RULES_PER_PROJECT} rules"),
        )));
    }
    let json = serde_json::to_string(rule).map_err(tally_catalog::CatalogError::from)?;
    Ok(catalog.put_rule(project, &rule.name, &json)?)
}

pub(crate) async fn post_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<RuleView>), ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    let rule: AggregationRule = read_json(body, MAX_RULE_BODY).await?;
    let replaced = save_rule(&s.catalog, &project, &rule).map_err(|e| match e {
        SaveRuleError::Invalid(f) => ApiError::bad_request(f),
        SaveRuleError::Catalog(c) => catalog_error(c),
    })?;
    // Build the rollup in the background; queries use raw events until it is ready.
    let store = s.store.clone();
    let catalog = std::sync::Arc::clone(&s.catalog);
    let overview = s.overview_rollups;
    tokio::spawn(async move { sync(&catalog, &store, overview).await });
    let saved = s
        .catalog
        .rules(Some(&project))
        .map_err(catalog_error)?
        .into_iter()
        .find(|r| r.name == rule.name)
        .and_then(|r| view(&s.store, &r))
        .ok_or_else(|| ApiError::internal("the rule vanished after saving", &rule.name))?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(saved)))
}

#[derive(Debug, Serialize)]
pub(crate) struct RuleList {
    rules: Vec<RuleView>,
}

pub(crate) async fn list_rules(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<RuleList>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    let rules = s
        .catalog
        .rules(Some(&project))
        .map_err(catalog_error)?
        .iter()
        .filter_map(|r| view(&s.store, r))
        .collect();
    Ok(Json(RuleList { rules }))
}

fn no_rule(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "rule_not_found",
        format!("no rule is named `{name}`"),
    )
}

pub(crate) async fn get_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<RuleView>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    s.catalog
        .rules(Some(&project))
        .map_err(catalog_error)?
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| view(&s.store, r))
        .map(Json)
        .ok_or_else(|| no_rule(&name))
}

pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Read)?;
    if !s
        .catalog
        .delete_rule(&project, &name)
        .map_err(catalog_error)?
    {
        return Err(no_rule(&name));
    }
    s.store
        .drop_rollup(&project, &name)
        .map_err(|e| ApiError::internal("dropping the rollup failed", e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes the store's rollups match the saved rules: builds missing or changed ones (one at a
/// time) and drops those whose rule is gone. With `overview`, every project also keeps the
/// overview's rollups (after its saved rules', ids starting with
/// [`tally_query::OVERVIEW_ROLLUP_PREFIX`]).
pub(crate) async fn sync(catalog: &Catalog, store: &dyn Store, overview: bool) {
    let saved = match catalog.rules(None) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the saved rules");
            return;
        }
    };
    let projects: Vec<ProjectId> = match catalog.list_projects() {
        Ok(ps) => ps.into_iter().map(|p| p.id).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the projects");
            return;
        }
    };
    let mut wanted = std::collections::HashSet::new();
    let mut defs = Vec::new();
    for r in &saved {
        wanted.insert((r.project.clone(), r.name.clone()));
        let def = serde_json::from_str::<AggregationRule>(&r.rule_json)
            .ok()
            .and_then(|rule| rule.rollup_def(&r.project).ok())
            .filter(|d| d.supported().is_ok());
        defs.extend(def.map(|d| (r.name.clone(), d)));
    }
    if overview {
        for project in &projects {
            for (id, def) in Overview::rollups(project) {
                wanted.insert((project.clone(), id.clone()));
                defs.push((id, def));
            }
        }
    }
    for (id, def) in defs {
        if let Err(e) = store.register_rollup(&id, def).await {
            tracing::warn!(rule = %id, error = %e, "could not build the rollup");
        }
    }
    for project in projects {
        for id in store.rollup_ids(&project) {
            if !wanted.contains(&(project.clone(), id.clone())) {
                let _ = store.drop_rollup(&project, &id);
            }
        }
    }
}
