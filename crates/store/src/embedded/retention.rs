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
/// (microseconds since the epoch) have expired. An event's own rule overrides the project-wide
/// one, for shorter or longer.
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
        let result = {
            // No flush or compaction meanwhile: the files stay put. A dry run only reads, and
            // files are deleted from disk only minutes after they leave the catalog.
            let _no_flush = if dry_run {
                None
            } else {
                Some(self.inner.flush_lock.lock().await)
            };
            let inner = Arc::clone(&self.inner);
            let (p, r) = (project.clone(), rules.to_vec());
            tokio::task::spawn_blocking(move || expire(&inner, &p, &r, dry_run))
                .await
                .map_err(|e| StoreError::Internal(format!("retention task failed: {e}")))?
        };
        // Also after an error: some files may have been replaced already.
        if !dry_run && result.as_ref().map_or(true, |r| r.events_removed > 0) {
            self.rebuild_rollups(project).await;
        }
        result
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
/// The cutoff that applies to events named `event`: their own rule's, else the project-wide one.
fn cutoff_for(rules: &[RetentionRule], event: &str) -> Option<i64> {
    rules
        .iter()
        .find(|r| r.event.as_deref() == Some(event))
        .or_else(|| rules.iter().find(|r| r.event.is_none()))
        .map(|r| r.before)
}

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
            let name = if events.is_null(i) {
                ""
            } else {
                events.value(i)
            };
            let expired = cutoff_for(rules, name).is_some_and(|c| ts.value(i) < c);
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
    // A file goes whole only if every rule has expired all of it (an event's own rule may keep
    // its events longer than the project-wide one).
    let whole = rules
        .iter()
        .any(|r| r.event.is_none())
        .then(|| rules.iter().map(|r| r.before).min())
        .flatten();
    let mut snapshots_dropped = false;
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
        if !snapshots_dropped {
            // Before the first change: a rollup snapshot would otherwise survive a crash here
            // and still count the expired events at the next start.
            let dir = inner.config.data_dir.join("rollups").join(project.as_str());
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(dir.display(), e)),
            }
            snapshots_dropped = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::EventRecord;

    #[test]
    fn an_events_own_rule_overrides_the_project_wide_one() {
        let mk = |event: &str, ts: i64| EventRecord {
            timestamp: ts,
            event: event.into(),
            person_id: "p".into(),
            ..Default::default()
        };
        let batch = crate::schema::records_to_batch(&[
            mk("pageview", 50),
            mk("signup", 50),
            mk("signup", 5),
            mk("login", 150),
        ])
        .unwrap();
        // Everything 100, signups longer (10), page views shorter (200).
        let rules = [
            RetentionRule {
                event: None,
                before: 100,
            },
            RetentionRule {
                event: Some("signup".into()),
                before: 10,
            },
            RetentionRule {
                event: Some("pageview".into()),
                before: 200,
            },
        ];
        let keep = keep_mask(&batch, &rules).unwrap();
        let kept: Vec<bool> = (0..keep.len()).map(|i| keep.value(i)).collect();
        assert_eq!(kept, [false, true, false, true]);
        assert_eq!(cutoff_for(&rules, "login"), Some(100));
        assert_eq!(cutoff_for(&rules[1..], "login"), None);
    }
}
