//! Read-only SQL over one project's events, as a table named `events`, within limits.
//!
//! Each statement runs in its own DataFusion session that knows exactly one table, the project's
//! events (buffer and Parquet files), so it can never see another project's data. DDL, DML
//! (INSERT, COPY) and statements (SET, ...) are refused by the planner; reading files by URL is
//! off. A memory pool bounds what the query may hold, a timeout cancels it, and at most
//! `max_rows` rows are returned. `EXPLAIN` and `EXPLAIN ANALYZE` show the plan (the latter runs the
//! query, within the same limits).

use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionContext};
use serde::Serialize;
use serde_json::Value;
use tally_core::ProjectId;

use super::EmbeddedStore;
use super::engine::{session_config, to_json};
use crate::{Result, StoreError};

/// The limits of one SQL statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub max_rows: usize,
    pub memory_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_rows: 10_000,
            memory_bytes: 512 << 20,
        }
    }
}

/// What a statement returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// True when there were more than `max_rows` rows and the rest were cut off.
    pub truncated: bool,
}

fn classify(e: DataFusionError) -> StoreError {
    // Errors from inside the plan arrive wrapped (context, shared, arrow); the root says what it was.
    if let DataFusionError::ResourcesExhausted(m) = e.find_root() {
        return StoreError::ResourcesExhausted(format!(
            "the query needs more memory than a SQL query may use: {m}"
        ));
    }
    match e {
        DataFusionError::ResourcesExhausted(m) => StoreError::ResourcesExhausted(format!(
            "the query needs more memory than a SQL query may use: {m}"
        )),
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::Internal(_) => StoreError::DataFusion(e),
        DataFusionError::Context(ctx, inner) => match classify(*inner) {
            StoreError::InvalidQuery(m) => StoreError::InvalidQuery(format!("{ctx}: {m}")),
            other => other,
        },
        other => StoreError::InvalidQuery(other.strip_backtrace()),
    }
}

impl EmbeddedStore {
    /// Runs one read-only SQL statement over `project`'s events.
    pub async fn sql(
        &self,
        project: &ProjectId,
        sql: &str,
        limits: SqlLimits,
    ) -> Result<SqlResult> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()?;
        let mut ctx = SessionContext::new_with_config_rt(
            session_config(self.inner.config.query_partitions),
            runtime,
        );
        datafusion_functions_json::register_all(&mut ctx)?;
        // Every event: from 1970 to the year 10000.
        let (from, to) = (0, 253_402_300_800_000_000);
        let sources = self.sources(project, from, to)?;
        let mut frame = super::engine::range_frame(&ctx, sources, from, to).await?;
        // `person_id` is the person after identity merges, as in every other query.
        if let Some(overrides) = self.person_overrides(project)? {
            frame = super::engine::with_overrides(&ctx, frame, overrides)?;
        }
        // The person key is the engine's own (a hash of `person_id`), not part of the table.
        let frame = frame.drop_columns(&[crate::schema::col::PERSON_KEY])?;
        ctx.register_table("events", frame.into_view())?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let run = async {
            let df = ctx.sql_with_options(sql, options).await.map_err(classify)?;
            let columns: Vec<String> = df
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            // EXPLAIN [ANALYZE] must stay the root of its plan; its output is a few rows.
            let explain = matches!(
                df.logical_plan(),
                LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)
            );
            let df = if explain {
                df
            } else {
                df.limit(0, Some(limits.max_rows + 1)).map_err(classify)?
            };
            let batches = df.collect().await.map_err(classify)?;
            let mut rows = Vec::new();
            for b in &batches {
                for r in 0..b.num_rows() {
                    let mut row = Vec::with_capacity(b.num_columns());
                    for c in 0..b.num_columns() {
                        let v = datafusion::common::ScalarValue::try_from_array(b.column(c), r)
                            .map_err(classify)?;
                        row.push(to_json(&v));
                    }
                    rows.push(row);
                }
            }
            let truncated = rows.len() > limits.max_rows;
            rows.truncate(limits.max_rows);
            Ok(SqlResult {
                columns,
                rows,
                truncated,
            })
        };
        tokio::time::timeout(limits.timeout, run)
            .await
            .map_err(|_| {
                StoreError::ResourcesExhausted(format!(
                    "the query ran longer than the {} s a SQL query may take",
                    limits.timeout.as_secs_f64()
                ))
            })?
    }
}
