//! Erasure (the right to be forgotten): every stored event of a person's ids leaves the
//! embedded store.
//!
//! 1. the project's rollups are suspended, snapshots included: their cells count the person's
//!    events and a sketch cannot forget one person;
//! 2. every Parquet file of the project that holds an event of the ids is rewritten without
//!    them (or dropped when nothing else is left), through the same catalog swap as retention,
//!    each under the flush lock;
//! 3. holding the flush lock to the end, the files that flushes and compactions added
//!    meanwhile are checked too, and the buffer is flushed with the person's rows left out, so
//!    they leave memory and the WAL segments that held them are deleted.
//!
//! The rollups are then rebuilt from what is left. The erasure takes effect at step 3's seal:
//! an event acknowledged after it is a new event. A crash in the middle leaves some files
//! rewritten and the rest as they were, never a file lost; running the erasure again finishes
//! it. Replaced files stay on disk, unreadable to queries, until maintenance deletes them
//! (10 minutes later in a server, at once from the CLI).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use serde::Serialize;
use tally_core::ProjectId;

use super::retention::replace_file;
use super::{EmbeddedStore, Inner, partition};
use crate::schema::{col, event_schema};
use crate::{Result, StoreError};

/// The id columns an event can name a person by: its own (`person_id`, what it counts for)
/// and the ids it arrived with.
const ID_COLUMNS: [&str; 3] = [col::PERSON_ID, col::USER_ID, col::ANONYMOUS_ID];

/// What an erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErasureReport {
    /// Events removed from Parquet files.
    pub stored_events_removed: u64,
    /// Events removed from the buffer (and so from the WAL).
    pub buffered_events_removed: u64,
    pub files_rewritten: usize,
    pub files_removed: usize,
}

impl ErasureReport {
    pub fn events_removed(&self) -> u64 {
        self.stored_events_removed + self.buffered_events_removed
    }
}

/// The events a flush leaves out: those of `ids` in `project`.
pub(super) struct Omit<'a> {
    pub(super) project: &'a ProjectId,
    pub(super) ids: &'a HashSet<String>,
}

impl Omit<'_> {
    fn strings<'b>(batch: &'b RecordBatch, name: &str) -> Result<Option<&'b StringArray>> {
        batch
            .column_by_name(name)
            .map(|c| {
                c.as_string_opt::<i32>().ok_or_else(|| {
                    StoreError::Internal(format!("column {name} is not a string column"))
                })
            })
            .transpose()
    }

    /// How many rows of `batch` belong to the person, and how many name one of its ids
    /// otherwise (another person's event that carries the person's anonymous id: a shared
    /// device).
    fn count(&self, batch: &RecordBatch) -> Result<(usize, usize)> {
        let own = self.owned(batch)?;
        Ok((own.true_count(), self.mentions(batch, &own)?))
    }

    /// How many rows not in `own` name one of the ids in `user_id` or `anonymous_id`.
    fn mentions(&self, batch: &RecordBatch, own: &BooleanArray) -> Result<usize> {
        let mut mentions = 0;
        for name in [col::USER_ID, col::ANONYMOUS_ID] {
            if let Some(values) = Self::strings(batch, name)? {
                mentions += (0..batch.num_rows())
                    .filter(|&i| {
                        !own.value(i) && values.is_valid(i) && self.ids.contains(values.value(i))
                    })
                    .count();
            }
        }
        Ok(mentions)
    }

    /// True for the rows stored under one of the ids: the person's own events.
    fn owned(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let persons = Self::strings(batch, col::PERSON_ID)?
            .ok_or_else(|| StoreError::Internal("a batch without person ids".into()))?;
        Ok((0..batch.num_rows())
            .map(|i| Some(persons.is_valid(i) && self.ids.contains(persons.value(i))))
            .collect())
    }

    /// `batch` without the person's events, the person's ids blanked in other persons' events,
    /// and how many events were removed.
    pub(super) fn without(&self, batch: &RecordBatch) -> Result<(RecordBatch, u64)> {
        let owned = self.owned(batch)?;
        let (own, mentions) = (owned.true_count(), self.mentions(batch, &owned)?);
        if own == 0 && mentions == 0 {
            return Ok((batch.clone(), 0));
        }
        let keep = datafusion::arrow::compute::not(&owned)?;
        let kept = filter_record_batch(batch, &keep)?;
        if mentions == 0 {
            return Ok((kept, own as u64));
        }
        let schema = kept.schema();
        let mut columns = kept.columns().to_vec();
        for name in [col::USER_ID, col::ANONYMOUS_ID] {
            let Some(values) = Self::strings(&kept, name)? else {
                continue;
            };
            let blanked: StringArray = values
                .iter()
                .map(|v| v.filter(|v| !self.ids.contains(*v)))
                .collect();
            let i = schema.index_of(name)?;
            columns[i] = Arc::new(blanked);
        }
        Ok((RecordBatch::try_new(schema, columns)?, own as u64))
    }
}

impl EmbeddedStore {
    /// Removes every event of `project` stored under one of `ids` (its `person_id`), and blanks
    /// those ids where another person's event carries them, from the buffer, the WAL, the Parquet files and the rollups (see the module's
    /// documentation). The person store is the caller's (`Catalog::forget_person`).
    pub async fn erase_events(&self, project: &ProjectId, ids: &[String]) -> Result<ErasureReport> {
        self.inner.writer()?;
        let ids: HashSet<String> = ids.iter().cloned().collect();
        if ids.is_empty() {
            return Ok(ErasureReport::default());
        }
        let result = {
            // Under the flush lock: no flush is sealing the rollups (and writing their
            // snapshots) while they are taken out.
            let suspended = {
                let _no_flush = self.inner.flush_lock.lock().await;
                Self::suspend_rollups(&self.inner, project)?
            };
            let inner = Arc::clone(&self.inner);
            let p = project.clone();
            let r = tokio::task::spawn_blocking(move || erase_blocking(&inner, &p, &ids))
                .await
                .map_err(|e| StoreError::Internal(format!("erasure task failed: {e}")))
                .and_then(|r| r);
            (suspended, r)
        };
        // Also after an error: the rollups were taken out of service. They are rebuilt in the
        // background (seconds per rollup on millions of events); queries use the raw events
        // meanwhile, which no longer hold the person.
        let (suspended, result) = result;
        let (this, p) = (self.clone(), project.clone());
        tokio::spawn(async move { this.restore_rollups(&p, suspended).await });
        result
    }
}

/// What erasing a person did: the counts the audit log records and the API answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PersonErasure {
    /// How many ids the person had (its own and those merged into it).
    pub ids: usize,
    /// The ids themselves: for the caller's own clean-up, never in the audit log or the answer.
    #[serde(skip)]
    pub erased_ids: Vec<String>,
    #[serde(flatten)]
    pub events: ErasureReport,
    /// Rows of the person store removed (properties and merged ids).
    pub person_records_removed: u64,
    /// Stored report outputs in which an id was replaced by `[erased]`.
    pub report_runs_redacted: u64,
    /// The audit log entry.
    pub audit_id: i64,
}

impl EmbeddedStore {
    /// Erases the person `id` belongs to, with every id linked to it: its events
    /// ([`EmbeddedStore::erase_events`]), then what the person store holds and the ids in
    /// stored report outputs, then records `actor` and the counts (never an id) in the audit
    /// log. Idempotent: running it again after a crash finishes it.
    pub async fn erase_person(
        &self,
        project: &ProjectId,
        id: &str,
        actor: &str,
    ) -> Result<PersonErasure> {
        // Its own task: a caller that gives up (a request cut by a timeout) does not cut the
        // erasure between its steps, with the flush lock released and rollups suspended.
        let (this, p, id, actor) = (
            self.clone(),
            project.clone(),
            id.to_owned(),
            actor.to_owned(),
        );
        tokio::spawn(async move { this.erase_person_now(&p, &id, &actor).await })
            .await
            .map_err(|e| StoreError::Internal(format!("erasure task failed: {e}")))?
    }

    async fn erase_person_now(
        &self,
        project: &ProjectId,
        id: &str,
        actor: &str,
    ) -> Result<PersonErasure> {
        let catalog = Arc::clone(self.catalog());
        let ids = catalog.linked_ids(project, id)?;
        let events = self.erase_events(project, &ids).await?;
        // Then the person store, the report outputs and the audit entry, in one transaction:
        // until it commits, a repeated erasure finds every id again.
        let counts = serde_json::to_value(&events)
            .map_err(|e| StoreError::Internal(format!("audit detail: {e}")))?;
        let record = catalog.finish_erasure(project, &ids, actor, &counts)?;
        catalog.checkpoint()?;
        Ok(PersonErasure {
            ids: ids.len(),
            events,
            person_records_removed: record.person_records_removed,
            report_runs_redacted: record.report_runs_redacted,
            audit_id: record.audit_id,
            erased_ids: ids,
        })
    }
}

/// Is `path` still a recorded file of `project`'s `day`?
fn still_recorded(inner: &Inner, project: &ProjectId, day: &str, path: &str) -> Result<bool> {
    Ok(inner
        .catalog
        .files(project, day, day)?
        .iter()
        .any(|x| x.path == path))
}

/// Rewrites one file without the person's events, if it has any; returns the new file's path.
fn erase_file(
    inner: &Inner,
    omit: &Omit<'_>,
    path: &str,
    report: &mut ErasureReport,
) -> Result<Option<String>> {
    let full = inner.config.data_dir.join(path);
    // The id columns first: most files hold nothing of the person.
    let mut hits = 0;
    for b in partition::read_columns(&full, Some(&ID_COLUMNS))? {
        let (own, mentions) = omit.count(&b)?;
        hits += own + mentions;
    }
    if hits == 0 {
        return Ok(None);
    }
    let all = concat_batches(&event_schema(), &partition::read_file(&full)?)?;
    let (kept, removed) = omit.without(&all)?;
    report.stored_events_removed += removed;
    if kept.num_rows() == 0 {
        report.files_removed += 1;
        replace_file(inner, omit.project, path, None)
    } else {
        report.files_rewritten += 1;
        replace_file(inner, omit.project, path, Some(&kept))
    }
}

/// The files first, each under the flush lock (held per file, so that flushes, and ingest
/// with them, go on during a long erasure); then, holding the lock to the end, the files that
/// flushes and compactions added meanwhile, and the buffer.
fn erase_blocking(
    inner: &Inner,
    project: &ProjectId,
    ids: &HashSet<String>,
) -> Result<ErasureReport> {
    let omit = Omit { project, ids };
    let mut report = ErasureReport::default();
    let mut done: HashSet<String> = HashSet::new();
    for f in inner.catalog.files(project, "0000-00-00", "9999-12-31")? {
        let _no_flush = inner.flush_lock.blocking_lock();
        if !still_recorded(inner, project, &f.day, &f.path)? {
            continue; // compacted meanwhile: the merged file is checked at the end
        }
        done.insert(f.path.clone());
        if let Some(new) = erase_file(inner, &omit, &f.path, &mut report)? {
            done.insert(new);
        }
    }
    let _no_flush = inner.flush_lock.blocking_lock();
    for f in inner.catalog.files(project, "0000-00-00", "9999-12-31")? {
        if !done.contains(&f.path) {
            erase_file(inner, &omit, &f.path, &mut report)?;
        }
    }
    // Every file is clean; now what the buffer holds, up to this instant.
    let (_, omitted) = inner.flush_omitting(Some(&omit))?;
    report.buffered_events_removed = omitted;
    tracing::info!(
        project = %project,
        events_removed = report.events_removed(),
        files_rewritten = report.files_rewritten,
        files_removed = report.files_removed,
        "erased a person's events"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::EventRecord;

    #[test]
    fn a_row_goes_when_any_of_its_ids_is_erased() {
        let mk = |person: &str, user: Option<&str>, anon: Option<&str>| EventRecord {
            event: "e".into(),
            person_id: person.into(),
            user_id: user.map(Into::into),
            anonymous_id: anon.map(Into::into),
            ..Default::default()
        };
        let batch = crate::schema::records_to_batch(&[
            mk("alice", Some("alice"), Some("a-1")),
            mk("a-2", None, Some("a-2")),
            mk("bob", Some("bob"), Some("a-1")),
            mk("carol", Some("carol"), None),
        ])
        .unwrap();
        let project = ProjectId::parse("p0123456789abcdef").unwrap();
        let ids: HashSet<String> = ["alice".into(), "a-1".into(), "a-2".into()].into();
        let (kept, removed) = Omit {
            project: &project,
            ids: &ids,
        }
        .without(&batch)
        .unwrap();
        // Alice's own events go; Bob's stays, without the device id he shared with her.
        assert_eq!(removed, 2);
        let people = kept
            .column_by_name(col::PERSON_ID)
            .unwrap()
            .as_string::<i32>();
        let anon = kept
            .column_by_name(col::ANONYMOUS_ID)
            .unwrap()
            .as_string::<i32>();
        assert_eq!(
            people.iter().collect::<Vec<_>>(),
            [Some("bob"), Some("carol")]
        );
        assert_eq!(anon.iter().collect::<Vec<_>>(), [None, None]);
    }
}
