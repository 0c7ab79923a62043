//! Retention: expired events leave the Parquet files. A file whose events have all expired is
//! dropped whole; a file with some expired events is rewritten without them (the new file is
//! written and synced first, then one catalog transaction swaps it in, so a crash at any point
//! leaves either the old file or the new one, never neither). Replaced files are deleted from
//! disk by maintenance 10 minutes later, once no query can still be reading them. The project's
//! rollups are then rebuilt from what is left.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use serde::Serialize;
use tally_core::ProjectId;

use super::{EmbeddedStore, Inner, partition};
use crate::schema::{col, event_schema};
use crate::{Result, StoreError};

/// Events named `event` (every event when `None`) whose timestamp is before `before`
/// (microseconds since the epoch) have expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    pub event: Option<String>,
    pub before: i64,
}

/// What a retention run removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub files_removed: usize,
    pub files_rewritten: usize,
    pub events_removed: u64,
    /// The UTC days that lost events.
    pub days: Vec<String>,
}

impl EmbeddedStore {
    /// Removes `project`'s expired events from the Parquet files (see the module's
    /// documentation); with `dry_run`, only counts them. Events still in the buffer are not
    /// touched: they go at the first run after they are flushed.
    pub async fn apply_retention(
        &self,
        project: &ProjectId,
        rules: &[RetentionRule],
        dry_run: bool,
    ) -> Result<RetentionReport> {
        if rules.is_empty() {
            return Ok(RetentionReport::default());
        }
        let report = {
            // No flush or compaction meanwhile: the files stay put.
            let _no_flush = self.inner.flush_lock.lock().await;
            let inner = Arc::clone(&self.inner);
            let (p, r) = (project.clone(), rules.to_vec());
            tokio::task::spawn_blocking(move || expire(&inner, &p, &r, dry_run))
                .await
                .map_err(|e| StoreError::Internal(format!("retention task failed: {e}")))??
        };
        if !dry_run && report.events_removed > 0 {
            self.rebuild_rollups(project).await;
        }
        Ok(report)
    }

    /// Rebuilds every rollup of `project` from storage.
    async fn rebuild_rollups(&self, project: &ProjectId) {
        let defs: Vec<(String, crate::plan::RollupDef)> = self
            .inner
            .rollups
            .lock()
            .iter()
            .filter(|((p, _), _)| p == project)
            .map(|((_, id), r)| (id.clone(), r.def.clone()))
            .collect();
        for (id, def) in defs {
            let _ = self.drop_rollup(project, &id);
            if let Err(e) = self.register_rollup(&id, def).await {
                tracing::warn!(rollup = %id, error = %e, "could not rebuild a rollup after retention");
            }
        }
    }
}

/// Which rows of `batch` stay.
fn keep_mask(batch: &RecordBatch, rules: &[RetentionRule]) -> Result<BooleanArray> {
    let ts = batch
        .column_by_name(col::TIMESTAMP)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| StoreError::Internal("a file without timestamps".into()))?;
    let events = batch
        .column_by_name(col::EVENT)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| StoreError::Internal("a file without event names".into()))?;
    Ok((0..batch.num_rows())
        .map(|i| {
            let t = ts.value(i);
            let expired = rules.iter().any(|r| {
                t < r.before
                    && r.event
                        .as_deref()
                        .is_none_or(|e| !events.is_null(i) && events.value(i) == e)
            });
            Some(!expired)
        })
        .collect())
}

fn expire(
    inner: &Inner,
    project: &ProjectId,
    rules: &[RetentionRule],
    dry_run: bool,
) -> Result<RetentionReport> {
    let mut report = RetentionReport::default();
    let latest_cutoff = rules.iter().map(|r| r.before).max().unwrap_or(i64::MIN);
    let whole = rules
        .iter()
        .filter(|r| r.event.is_none())
        .map(|r| r.before)
        .max();
    for f in inner.catalog.files(project, "0000-00-00", "9999-12-31")? {
        if f.min_ts >= latest_cutoff {
            continue;
        }
        let (removed, replacement) = if whole.is_some_and(|c| f.max_ts < c) {
            (f.rows, None)
        } else {
            let batches = partition::read_file(&inner.config.data_dir.join(&f.path))?;
            let all = concat_batches(&event_schema(), &batches)?;
            let keep = keep_mask(&all, rules)?;
            let removed = keep.false_count() as u64;
            if removed == 0 {
                continue;
            }
            let kept = (removed < all.num_rows() as u64)
                .then(|| filter_record_batch(&all, &keep))
                .transpose()?;
            (removed, kept)
        };
        report.events_removed += removed;
        report.days.push(f.day.clone());
        match &replacement {
            Some(_) => report.files_rewritten += 1,
            None => report.files_removed += 1,
        }
        if dry_run {
            continue;
        }
        let added = match replacement {
            Some(kept) => vec![partition::write_file(
                &inner.config.data_dir,
                project,
                &kept,
            )?],
            None => Vec::new(),
        };
        let _consistent_with_queries = inner.buffer.write();
        inner
            .catalog
            .commit_files(&added, std::slice::from_ref(&f.path), None)?;
    }
    report.days.sort();
    report.days.dedup();
    Ok(report)
}
