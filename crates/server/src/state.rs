//! What every handler shares.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tally_catalog::Catalog;
use tally_collect::{EventManager, Limits};
use tally_core::ProjectId;
use tally_process::{EventProcessor, ProjectSchemas};
use tally_query::Aggregator;
use tally_report::{
    Clock, Deliverer, DeliveryConfig, ReportGenerator, ReportScheduler, SchedulerConfig,
    SystemClock,
};
use tally_store::{EmbeddedStore, SqlLimits};
use tally_viz::{ChartGenerator, DashboardManager};
use tokio::sync::Semaphore;

use crate::auth::KeyCache;
use crate::error::ApiError;
use crate::ingest::IngestBatch;

/// Bytes of request bodies being decoded and processed at once; beyond it ingest answers 503.
pub(crate) const MAX_INFLIGHT_BODY_BYTES: usize = 256 << 20;
const SCHEMA_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) store: EmbeddedStore,
    pub(crate) aggregator: Aggregator,
    pub(crate) processor: Arc<EventProcessor>,
    pub(crate) manager: EventManager<IngestBatch>,
    pub(crate) limits: Limits,
    pub(crate) sql_limits: SqlLimits,
    pub(crate) keys: KeyCache,
    pub(crate) inflight_bytes: Arc<Semaphore>,
    schemas: Mutex<HashMap<ProjectId, (Instant, Arc<ProjectSchemas>)>>,
    pub(crate) counters: crate::metrics::Counters,
    pub(crate) seen_merges: crate::identity::SeenMerges,
    pub(crate) salt: crate::tracker::VisitorSalt,
    /// Client addresses come from `X-Forwarded-For`.
    pub(crate) trust_proxy: bool,
    /// Every project keeps the overview's rollups (see `--overview-rollups`).
    pub(crate) overview_rollups: bool,
    pub(crate) charts: ChartGenerator,
    pub(crate) reports: Arc<ReportScheduler>,
    pub(crate) dashboards: DashboardManager,
    pub(crate) overviews: crate::overview::OverviewCache,
    /// The session cookie is `Secure` (see `--insecure-cookies`).
    pub(crate) secure_cookies: bool,
    pub(crate) sign_ins: crate::session::SignInThrottle,
}

impl AppState {
    pub fn new(
        catalog: Arc<Catalog>,
        store: EmbeddedStore,
        processor: Arc<EventProcessor>,
        manager: EventManager<IngestBatch>,
        limits: Limits,
        sql_limits: SqlLimits,
    ) -> Self {
        let aggregator = Aggregator::new(Arc::new(store.clone()));
        let charts = ChartGenerator::new();
        let dashboards =
            DashboardManager::new(Arc::clone(&catalog), aggregator.clone(), charts.clone());
        let delivery = DeliveryConfig {
            report_dir: store.data_dir().join("reports"),
            smtp: None,
        };
        let reports = scheduler(
            &catalog,
            &store,
            &charts,
            delivery,
            SchedulerConfig::default(),
            Arc::new(SystemClock),
        );
        Self {
            inner: Arc::new(Inner {
                catalog,
                store,
                aggregator,
                processor,
                manager,
                limits,
                sql_limits,
                keys: KeyCache::default(),
                inflight_bytes: Arc::new(Semaphore::new(MAX_INFLIGHT_BODY_BYTES)),
                schemas: Mutex::new(HashMap::new()),
                counters: Default::default(),
                seen_merges: Default::default(),
                salt: Default::default(),
                trust_proxy: false,
                overview_rollups: true,
                charts,
                reports,
                dashboards,
                overviews: Default::default(),
                secure_cookies: true,
                sign_ins: Default::default(),
            }),
        }
    }
}

fn scheduler(
    catalog: &Arc<Catalog>,
    store: &EmbeddedStore,
    charts: &ChartGenerator,
    delivery: DeliveryConfig,
    config: SchedulerConfig,
    clock: Arc<dyn Clock>,
) -> Arc<ReportScheduler> {
    Arc::new(ReportScheduler::new(
        Arc::clone(catalog),
        ReportGenerator::new(Arc::new(store.clone())),
        Deliverer::new(delivery, charts.clone()),
        clock,
        config,
    ))
}

impl AppState {
    /// Takes client addresses from `X-Forwarded-For` (see `--trust-proxy`).
    pub fn trusting_proxy(mut self, trust: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.trust_proxy = trust;
        }
        self
    }

    /// Whether the session cookie is `Secure` (see `--insecure-cookies`).
    pub fn with_secure_cookies(mut self, secure: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.secure_cookies = secure;
        }
        self
    }

    /// Per-key request rates (see `--ingest-rate-limit`, `--query-rate-limit`).
    pub fn with_rate_limits(mut self, limits: crate::auth::RateLimits) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.keys = KeyCache::with_limits(limits);
        }
        self
    }

    /// Whether every project keeps the overview's rollups (see `--overview-rollups`).
    pub fn with_overview_rollups(mut self, on: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.overview_rollups = on;
        }
        self
    }
}

impl AppState {
    /// Sets where reports are delivered, how the scheduler retries, and its clock.
    pub fn with_reports(
        mut self,
        delivery: DeliveryConfig,
        config: SchedulerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.reports = scheduler(
                &inner.catalog,
                &inner.store,
                &inner.charts,
                delivery,
                config,
                clock,
            );
        }
        self
    }

    /// The report scheduler (`serve` runs it in the background).
    pub fn reports(&self) -> Arc<ReportScheduler> {
        Arc::clone(&self.inner.reports)
    }
}

impl Inner {
    /// The project's event schemas, re-read from the catalog every few seconds.
    pub(crate) fn schemas(&self, project: &ProjectId) -> Result<Arc<ProjectSchemas>, ApiError> {
        if let Some((at, s)) = self.schemas.lock().get(project)
            && at.elapsed() < SCHEMA_TTL
        {
            return Ok(Arc::clone(s));
        }
        let load = || -> Result<ProjectSchemas, tally_catalog::CatalogError> {
            let p = self.catalog.find_project(project.as_str())?;
            let schemas = self
                .catalog
                .schemas(project)?
                .into_iter()
                .map(|s| (s.event.clone(), s))
                .collect();
            Ok(ProjectSchemas {
                schemas,
                strict: p.strict_schemas,
                consent: p.consent,
            })
        };
        let s = Arc::new(
            load().map_err(|e| ApiError::internal("loading the project's schemas failed", e))?,
        );
        self.schemas
            .lock()
            .insert(project.clone(), (Instant::now(), Arc::clone(&s)));
        Ok(s)
    }
}
