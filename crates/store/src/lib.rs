//! Storage: where processed events live and how a query description runs over them.
//!
//! Every engine implements [`Store`]: `write` makes a group of processed events durable and
//! visible, `aggregate` runs one [`AggregateQuery`] (the engine-neutral query description that the
//! query layer compiles rules into). The embedded engine ([`EmbeddedStore`]) keeps a WAL, an
//! in-memory Arrow buffer and Parquet files partitioned by project and day, queried with
//! DataFusion. A ClickHouse engine will implement the same trait.
//!
//! This crate never parses client input and never interprets rules: it stores records and executes
//! query descriptions.

mod embedded;
pub mod plan;
pub mod schema;

use std::fmt;

use tally_core::{EventRecord, ProjectId};

pub use embedded::{
    EmbeddedStore, EmbeddedStoreConfig, ErasureReport, FlushReport, PersonErasure, RetentionReport,
    RetentionRule, SqlLimits, SqlResult,
};
pub use plan::{
    AggregateQuery, FieldRef, Filter, FilterOp, GROUP_COLUMN_PREFIX, Lookups, Measure,
    PAGEVIEW_EVENT, PATH_END, PATH_START, PERSON_COLUMN, PathDirection, PathQuery, ResultTable,
    RetentionCounts, RetentionQuery, RollupDef, RollupStatus, SESSION_LOOKAROUND_US,
    SessionBreakdown, SessionQuery, StepEvent, StepEvents, StepQuery,
};

/// Processed events of one project, in arrival order.
#[derive(Debug, Clone)]
pub struct ProjectBatch {
    pub project: ProjectId,
    pub records: Vec<EventRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take more right now (buffer full, persistence behind): retry later.
    #[error("the store is overloaded: {0}")]
    Overloaded(String),
    /// The query description is invalid for this engine.
    #[error("{0}")]
    InvalidQuery(String),
    /// The query hit a resource limit (time, rows, memory).
    #[error("{0}")]
    ResourcesExhausted(String),
    #[error("the data directory is in use by another Tally process ({0})")]
    Locked(String),
    #[error("WAL: {0}")]
    Wal(#[from] tally_wal::WalError),
    #[error("metadata: {0}")]
    Catalog(#[from] tally_catalog::CatalogError),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("internal: {0}")]
    Internal(String),
}

impl StoreError {
    pub(crate) fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }

    /// Is this the caller's fault (a bad query) rather than the store's?
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::InvalidQuery(_) | Self::ResourcesExhausted(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Events stored.
    pub stored: usize,
    /// Events dropped because their `message_id` was already stored.
    pub duplicates: usize,
}

/// A storage engine.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Makes the batches durable and visible to queries, in one commit. Returns only once durable.
    async fn write(&self, batches: Vec<ProjectBatch>) -> Result<WriteOutcome>;

    /// Runs one query description.
    async fn aggregate(&self, query: &AggregateQuery) -> Result<ResultTable>;

    /// Runs several query descriptions, answers in their order. An engine may answer queries
    /// that differ only in measure and limit ([`AggregateQuery::same_groups`]) with one scan.
    async fn aggregate_many(&self, queries: &[AggregateQuery]) -> Result<Vec<ResultTable>> {
        futures::future::try_join_all(queries.iter().map(|q| self.aggregate(q))).await
    }

    /// The events matching any step of `query`, ordered by person, then time.
    async fn step_events(&self, query: &StepQuery) -> Result<StepEvents>;

    /// Cohort sizes and returning persons (see [`RetentionQuery`]).
    async fn retention(&self, query: &RetentionQuery) -> Result<RetentionCounts>;

    /// Summarizes sessions (see [`SessionQuery`]).
    async fn sessions(&self, query: &SessionQuery) -> Result<ResultTable>;

    /// The most common items around an anchor (see [`PathQuery`]).
    async fn paths(&self, query: &PathQuery) -> Result<ResultTable>;

    /// Persists everything buffered (used at shutdown and by tests and benchmarks).
    async fn flush(&self) -> Result<()>;

    /// This store as it was for queries at an instant: it sees only the events received before
    /// `received_before` (microseconds since the epoch), so that a report run again for the
    /// same instant gives the same numbers.
    fn as_of(&self, received_before: i64) -> std::sync::Arc<dyn Store>;

    /// Keeps rollup `id` of `def.project` up to date from now on (building it first). An engine
    /// without rollups refuses.
    async fn register_rollup(&self, id: &str, def: RollupDef) -> Result<()> {
        let _ = (id, def);
        Err(StoreError::InvalidQuery(
            "this engine keeps no rollups".into(),
        ))
    }

    /// Forgets a rollup.
    fn drop_rollup(&self, project: &ProjectId, id: &str) -> Result<()> {
        let _ = (project, id);
        Ok(())
    }

    /// The ids of the project's rollups.
    fn rollup_ids(&self, project: &ProjectId) -> Vec<String> {
        let _ = project;
        Vec::new()
    }

    fn rollup_status(&self, project: &ProjectId, id: &str) -> Option<RollupStatus> {
        let _ = (project, id);
        None
    }

    /// `query`'s answer from a rollup, when one can give it.
    fn aggregate_from_rollup(&self, query: &AggregateQuery) -> Option<ResultTable> {
        let _ = query;
        None
    }
}
