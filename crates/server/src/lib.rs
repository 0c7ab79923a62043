//! The server: HTTP routes that wire the stages together (collect → process → store → query →
//! report / visualize).
//!
//! Nothing else imports this crate. It owns authentication, the mapping of every stage's errors
//! to HTTP answers (`{"error": {"code", "message", "field"}}`), `/metrics`, background
//! maintenance and graceful shutdown.

mod auth;
mod charts;
mod config;
mod dashboards;
mod error;
mod identity;
mod ingest;
mod keys;
mod metrics;
mod overview;
mod posthog;
mod query;
mod reports;
pub mod retention;
mod rules;
mod segment;
mod session;
mod sql;
mod state;
mod tracker;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tally_catalog::Catalog;
use tally_collect::EventManager;
use tally_process::{EventProcessor, PiiPolicy, ProcessorConfig};
use tally_store::{EmbeddedStore, Store};
use tokio::net::TcpListener;

pub use auth::RateLimits;
pub use config::ServeConfig;
pub use ingest::IngestBatch;
pub use rules::{SaveRuleError, save_rule};
pub use state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] tally_store::StoreError),
    #[error(transparent)]
    Catalog(#[from] tally_catalog::CatalogError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// Opens the metadata store, the embedded engine, and the pipeline.
pub fn open_catalog(config: &ServeConfig) -> Result<Arc<Catalog>, ServerError> {
    std::fs::create_dir_all(&config.data_dir)?;
    Ok(Arc::new(Catalog::open(
        &config.data_dir.join("meta.sqlite"),
    )?))
}

/// `--owner-email` (`TALLY_OWNER_EMAIL`) and `TALLY_OWNER_PASSWORD`: the user is created if it does not exist (its password is not changed if it does) and made owner
/// of every project that has no owner yet.
fn bootstrap_owner(catalog: &Catalog, config: &ServeConfig) -> Result<(), ServerError> {
    let Some(email) = config
        .owner_email
        .as_deref()
        .filter(|e| !e.trim().is_empty())
    else {
        return Ok(());
    };
    let user = match catalog.user(email) {
        Ok(u) => u,
        Err(tally_catalog::CatalogError::NotFound { .. }) => {
            let password = std::env::var("TALLY_OWNER_PASSWORD").map_err(|_| {
                ServerError::Config(format!(
                    "--owner-email {email} has no user yet: give its password in TALLY_OWNER_PASSWORD"
                ))
            })?;
            let u = catalog
                .create_user(email, &password)
                .map_err(|e| ServerError::Config(format!("--owner-email: {e}")))?;
            tracing::info!(email = %u.email, "created the owner");
            u
        }
        Err(e) => return Err(e.into()),
    };
    for p in catalog.list_projects()? {
        let owned = catalog
            .members(&p.id)?
            .iter()
            .any(|m| m.role == tally_catalog::Role::Owner);
        if !owned {
            catalog.set_role(&user.email, &p.id, tally_catalog::Role::Owner)?;
            tracing::info!(email = %user.email, project = %p.name, "made owner");
        }
    }
    Ok(())
}

/// Builds the router over a state (used by `serve` and by in-process tests).
pub fn router(state: AppState) -> Router {
    // Ingest endpoints take requests from any origin (browsers send events cross-site); the
    // others do not.
    let ingest = Router::new()
        .route("/v1/events", post(ingest::post_events))
        .route("/t/e", post(tracker::hit))
        .merge(segment::routes())
        .merge(posthog::routes())
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(tracker::ingest_cors());
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics::render))
        .route("/t.js", get(tracker::script))
        .route("/v1/query", post(query::post_query))
        .route("/v1/sql", post(sql::post_sql))
        .route("/v1/rules", post(rules::post_rule).get(rules::list_rules))
        .route(
            "/v1/rules/{name}",
            get(rules::get_rule).delete(rules::delete_rule),
        )
        .route("/v1/charts", post(charts::post_chart))
        .route("/v1/reports", post(reports::create).get(reports::list))
        .route(
            "/v1/reports/{id}",
            get(reports::get_one)
                .put(reports::replace)
                .delete(reports::delete),
        )
        .route("/v1/reports/{id}/run", post(reports::run))
        .route("/v1/reports/{id}/send", post(reports::send))
        .route("/v1/reports/{id}/runs", get(reports::runs))
        .route("/v1/reports/{id}/runs/{run}", get(reports::get_run))
        .route("/v1/project", get(ui::project))
        .route("/v1/overview", get(overview::get_overview))
        .route("/v1/overview/stream", get(overview::stream))
        .route(
            "/v1/dashboards",
            post(dashboards::create).get(dashboards::list),
        )
        .route(
            "/v1/dashboards/{id}",
            get(dashboards::get_one)
                .put(dashboards::replace)
                .delete(dashboards::delete),
        )
        .route("/v1/dashboards/{id}/widgets", post(dashboards::add_widget))
        .route(
            "/v1/dashboards/{id}/widgets/{widget}",
            get(dashboards::widget),
        )
        .route(
            "/v1/dashboards/{id}/shares",
            post(dashboards::create_share).get(dashboards::list_shares),
        )
        .route(
            "/v1/dashboards/{id}/shares/{share}",
            axum::routing::delete(dashboards::revoke_share),
        )
        .route("/v1/widgets/preview", post(dashboards::preview))
        .route("/v1/shared/{token}", get(dashboards::get_shared))
        .route(
            "/v1/shared/{token}/widgets/{widget}",
            get(dashboards::shared_widget),
        )
        .merge(ui::routes())
        .route(
            "/v1/persons/{id}",
            get(identity::get_person).delete(identity::erase_person),
        )
        .route("/v1/audit", get(identity::audit_log))
        .route("/v1/persons/{id}/export", get(identity::export_person))
        .route("/v1/retention", get(retention::get_retention))
        .route("/v1/keys", get(keys::list_keys).post(keys::create_key))
        .route(
            "/v1/keys/{id}",
            axum::routing::delete(keys::revoke_key).put(keys::update_key),
        )
        .route("/v1/keys/{id}/rotate", post(keys::rotate_key))
        .route("/v1/groups/{type}/{key}", get(identity::get_group))
        .route(
            "/v1/session",
            post(session::sign_in)
                .get(session::current)
                .delete(session::sign_out),
        )
        .route("/v1/members", get(session::list_members))
        .route(
            "/v1/members/{email}",
            axum::routing::put(session::set_member).delete(session::remove_member),
        )
        // Every route so far; ingest takes keys only, so it needs no CSRF token.
        .layer(axum::middleware::from_fn(session::require_csrf))
        // Before the ingest routes are merged: theirs stays inside the CORS layer, which
        // answers preflight requests.
        .method_not_allowed_fallback(error::method_not_allowed)
        .merge(ingest)
        .fallback(error::not_found)
        .with_state(state)
}

/// Starts everything and serves until SIGINT/SIGTERM; then drains the queue and flushes.
pub async fn serve(config: ServeConfig) -> Result<(), ServerError> {
    let catalog = open_catalog(&config)?;
    bootstrap_owner(&catalog, &config)?;
    let store = EmbeddedStore::open(config.store_config(), Arc::clone(&catalog))?;
    let processor = Arc::new(EventProcessor::new(ProcessorConfig {
        ip_mode: config.ip_mode,
        pii: PiiPolicy::load(config.pii_policy.as_deref()).map_err(ServerError::Config)?,
        pii_salt: catalog.pii_salt()?,
        ..ProcessorConfig::default()
    }));
    let (manager, writer) = EventManager::start(
        ingest::StoreSink::new(Arc::new(store.clone())),
        config.manager_config(),
    );
    let state = AppState::new(
        catalog,
        store.clone(),
        processor,
        manager,
        config.limits(),
        config.sql_limits(),
    )
    .trusting_proxy(config.trust_proxy)
    .with_overview_rollups(config.overview_rollups)
    .with_rate_limits(config.rate_limits())
    .with_secure_cookies(!config.insecure_cookies)
    .with_reports(
        config.delivery_config(),
        config.scheduler_config(),
        Arc::new(tally_report::SystemClock),
    );

    let maintenance = tokio::spawn(maintain(store.clone()));
    let rule_sync = tokio::spawn(sync_rules(
        Arc::clone(&state.inner.catalog),
        store.clone(),
        config.overview_rollups,
    ));
    let report_scheduler = tokio::spawn(state.reports().run_forever());
    let retention = tokio::spawn(retention::run_forever(
        Arc::clone(&state.inner.catalog),
        store.clone(),
    ));
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "tally is listening");
    axum::serve(
        listener,
        router(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;

    tracing::info!("shutting down: draining the queue and flushing");
    maintenance.abort();
    rule_sync.abort();
    report_scheduler.abort();
    retention.abort();
    drop(state);
    let _ = writer.await;
    store.flush().await?;
    Ok(())
}

async fn maintain(store: EmbeddedStore) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = store.maintain().await {
            tracing::error!(error = %e, "background maintenance failed");
        }
    }
}

/// Keeps the rollups in line with the saved rules (the CLI may change them while we run).
async fn sync_rules(catalog: Arc<Catalog>, store: EmbeddedStore, overview: bool) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        rules::sync(&catalog, &store, overview).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
