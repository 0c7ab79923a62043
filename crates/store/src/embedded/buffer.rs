//! The in-memory Arrow buffer: what is in the WAL but not yet in Parquet, queryable at once.

use std::collections::HashMap;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use tally_core::ProjectId;

use crate::schema::event_schema;

/// Small batches are merged once a project has this many, so that queries scan few large ones.
const MERGE_AFTER_BATCHES: usize = 32;

#[derive(Debug, Default)]
struct ProjectChunks {
    /// Merged, large batches.
    merged: Vec<RecordBatch>,
    /// Recent small batches, merged into one when there are enough of them.
    recent: Vec<RecordBatch>,
    rows: usize,
}

impl ProjectChunks {
    fn push(&mut self, batch: RecordBatch) {
        self.rows += batch.num_rows();
        self.recent.push(batch);
        if self.recent.len() >= MERGE_AFTER_BATCHES {
            match concat_batches(&event_schema(), &self.recent) {
                Ok(b) => {
                    self.merged.push(b);
                    self.recent.clear();
                }
                Err(e) => tracing::warn!(error = %e, "could not merge buffered batches"),
            }
        }
    }

    fn batches(&self) -> impl Iterator<Item = &RecordBatch> {
        self.merged.iter().chain(self.recent.iter())
    }
}

/// The buffer has an open part (receiving writes) and, during a flush, a sealed part (being
/// written to Parquet). Both are visible to queries until the flush commits.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    open: HashMap<ProjectId, ProjectChunks>,
    sealed: HashMap<ProjectId, ProjectChunks>,
    open_rows: usize,
    sealed_rows: usize,
}

impl Buffer {
    pub(crate) fn push(&mut self, project: &ProjectId, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        self.open_rows += batch.num_rows();
        self.open.entry(project.clone()).or_default().push(batch);
    }

    pub(crate) fn open_rows(&self) -> usize {
        self.open_rows
    }

    pub(crate) fn total_rows(&self) -> usize {
        self.open_rows + self.sealed_rows
    }

    /// Every batch of `project`, sealed and open.
    pub(crate) fn batches_for(&self, project: &ProjectId) -> Vec<RecordBatch> {
        self.sealed
            .get(project)
            .into_iter()
            .chain(self.open.get(project))
            .flat_map(|c| c.batches().cloned())
            .collect()
    }

    /// Moves the open part to the sealed part and returns a copy of it to persist. A previous
    /// sealed part must have been dropped first.
    pub(crate) fn seal(&mut self) -> Vec<(ProjectId, Vec<RecordBatch>)> {
        debug_assert!(self.sealed.is_empty());
        self.sealed = std::mem::take(&mut self.open);
        self.sealed_rows = std::mem::take(&mut self.open_rows);
        let mut out: Vec<_> = self
            .sealed
            .iter()
            .map(|(p, c)| (p.clone(), c.batches().cloned().collect()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forgets the sealed part, now that it is in Parquet.
    pub(crate) fn drop_sealed(&mut self) {
        self.sealed.clear();
        self.sealed_rows = 0;
    }

    /// Puts a sealed part back in front of the open one after a failed flush.
    pub(crate) fn unseal(&mut self) {
        for (p, sealed) in std::mem::take(&mut self.sealed) {
            let open = self.open.remove(&p).unwrap_or_default();
            let mut merged = sealed;
            for b in open.batches() {
                merged.push(b.clone());
            }
            self.open.insert(p, merged);
        }
        self.open_rows += std::mem::take(&mut self.sealed_rows);
    }
}
