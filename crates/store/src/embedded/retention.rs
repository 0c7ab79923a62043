//! Retention: expired events leave the Parquet files. A file whose events have all expired is
//! dropped whole; a file with some expired events is rewritten without them (the new file is
//! written and synced first, then one catalog transaction swaps it in, so a crash at any point
//! leaves either the old file or the new one, never neither). Replaced files are deleted from
//! disk by maintenance 10 minutes later, once no query can still be reading them. The project's
//! rollups are taken out of service before the first change and rebuilt from what is left.

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

/// A project's rollups, taken out of service while its files change (see
/// [`EmbeddedStore::suspend_rollups`]).
pub(super) type SuspendedRollups = Vec<(String, crate::plan::RollupDef)>;

impl EmbeddedStore {
    /// Removes `project`'s expired events from the Parquet files (see the module's
    /// documentation); with `dry_run`, only counts them. Events still in the buffer are not
    /// touched: they go at the first run after they are flushed.
    ///
    /// The flush lock is held per file, not for the whole run, so a long run does not hold
    /// flushes off (and ingest with them, once the buffer is full): each file is checked to be
    /// still recorded under the lock before it is replaced.
    pub async fn apply_retention(
        &self,
        project: &ProjectId,
        rules: &[RetentionRule],
        dry_run: bool,
    ) -> Result<RetentionReport> {
        if rules.is_empty() {
            return Ok(RetentionReport::default());
        }
        // Its own task: a caller that gives up does not leave the rollups suspended.
        let (this, p, r) = (self.clone(), project.clone(), rules.to_vec());
        tokio::spawn(async move { this.apply_retention_now(&p, &r, dry_run).await })
            .await
            .map_err(|e| StoreError::Internal(format!("retention task failed: {e}")))?
    }

    async fn apply_retention_now(
        &self,
        project: &ProjectId,
        rules: &[RetentionRule],
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let inner = Arc::clone(&self.inner);
        let (p, r) = (project.clone(), rules.to_vec());
        let suspended: Arc<parking_lot::Mutex<Option<SuspendedRollups>>> = Default::default();
        let s2 = Arc::clone(&suspended);
        let result = tokio::task::spawn_blocking(move || expire(&inner, &p, &r, dry_run, &s2))
            .await
            .map_err(|e| StoreError::Internal(format!("retention task failed: {e}")))
            .and_then(|r| r);
        // Also after an error (or a panic): some files may have been replaced already.
        let suspended = suspended.lock().take();
        if let Some(defs) = suspended {
            self.restore_rollups(project, defs).await;
        }
        result
    }

    /// Takes `project`'s rollups out of service before its stored events change: they leave
    /// memory (so no flush writes their snapshots, which would still count the removed events
    /// and survive a crash) and their snapshots leave the disk. Queries use the raw events
    /// until [`EmbeddedStore::restore_rollups`] has rebuilt them.
    pub(super) fn suspend_rollups(inner: &Inner, project: &ProjectId) -> Result<SuspendedRollups> {
        let defs: SuspendedRollups = {
            let mut suspended = inner.suspended.lock();
            *suspended.entry(project.clone()).or_default() += 1;
            let mut rollups = inner.rollups.lock();
            let ids: Vec<(ProjectId, String)> = rollups
                .keys()
                .filter(|(p, _)| p == project)
                .cloned()
                .collect();
            ids.into_iter()
                .filter_map(|k| rollups.remove(&k).map(|r| (k.1, r.def)))
                .collect()
        };
        let dir = inner.config.data_dir.join("rollups").join(project.as_str());
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(defs),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(defs),
            Err(e) => {
                // Not suspended after all: the server's rule sync registers them again.
                end_suspension(inner, project);
                Err(StoreError::io(dir.display(), e))
            }
        }
    }

    /// Ends one suspension of `project`'s rollups; when none is left, registers `defs` again,
    /// each rebuilt from storage (a later rule sync registers those of a run that ended
    /// earlier, and saved rules are registered again by the server within seconds anyway).
    pub(super) async fn restore_rollups(&self, project: &ProjectId, defs: SuspendedRollups) {
        end_suspension(&self.inner, project);
        for (id, def) in defs {
            let _ = self.drop_rollup(project, &id);
            if let Err(e) = self.register_rollup(&id, def).await {
                tracing::warn!(rollup = %id, error = %e, "could not rebuild a rollup");
            }
        }
    }
}

/// Ends one suspension of `project`'s rollups (see [`EmbeddedStore::suspend_rollups`]).
fn end_suspension(inner: &Inner, project: &ProjectId) {
    let mut suspended = inner.suspended.lock();
    if let Some(n) = suspended.get_mut(project) {
        *n -= 1;
        if *n == 0 {
            suspended.remove(project);
        }
    }
}

/// The cutoff that applies to events named `event`: their own rule's, else the project-wide one.
fn cutoff_for(rules: &[RetentionRule], event: &str) -> Option<i64> {
    rules
        .iter()
        .find(|r| r.event.as_deref() == Some(event))
        .or_else(|| rules.iter().find(|r| r.event.is_none()))
        .map(|r| r.before)
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
    suspended: &parking_lot::Mutex<Option<SuspendedRollups>>,
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
    for f in inner.catalog.files(project, "0000-00-00", "9999-12-31")? {
        if f.min_ts >= latest_cutoff {
            continue;
        }
        // No flush or compaction while this file is read and replaced; a dry run only reads
        // (files leave the disk only minutes after they leave the catalog).
        let _no_flush = (!dry_run).then(|| inner.flush_lock.blocking_lock());
        if !dry_run
            && !inner
                .catalog
                .files(project, &f.day, &f.day)?
                .iter()
                .any(|x| x.path == f.path)
        {
            continue; // compacted meanwhile: the next run sees the merged file
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
        {
            let mut s = suspended.lock();
            if s.is_none() {
                // Before the first change.
                *s = Some(EmbeddedStore::suspend_rollups(inner, project)?);
            }
        }
        replace_file(inner, project, &f.path, replacement.as_ref())?;
    }
    report.days.sort();
    report.days.dedup();
    Ok(report)
}

/// Replaces the recorded file `path` by a file of `kept` (or by nothing) and returns the new
/// file's path: the new file is written and synced first, then one catalog transaction swaps them, under the buffer's lock so
/// that a query sees the old file or the new one, never both or neither.
pub(super) fn replace_file(
    inner: &Inner,
    project: &ProjectId,
    path: &str,
    kept: Option<&RecordBatch>,
) -> Result<Option<String>> {
    let added = match kept {
        Some(kept) => vec![partition::write_file(
            &inner.config.data_dir,
            project,
            kept,
        )?],
        None => Vec::new(),
    };
    let _consistent_with_queries = inner.buffer.write();
    if let Err(e) = inner.catalog.commit_files(&added, &[path.to_owned()], None) {
        for f in &added {
            let _ = std::fs::remove_file(inner.config.data_dir.join(&f.path));
        }
        return Err(e.into());
    }
    Ok(added.into_iter().next().map(|f| f.path))
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
