//! The `BatchProcessor`: the same processing as HTTP ingest, over a file of newline-delimited JSON
//! events (optionally gzip-compressed), for bulk imports and backfills.

use std::io::BufRead;
use std::sync::Arc;

use chrono::Utc;
use tally_core::{EventRecord, FieldError, ProjectId};

use crate::{EventProcessor, ProjectSchemas};

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportStats {
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// The first rejections (line number from 1, error), at most [`BatchProcessor::MAX_REPORTED`].
    pub errors: Vec<(u64, FieldError)>,
}

/// Processes files of events in chunks, handing each chunk of records to the caller.
#[derive(Debug, Clone)]
pub struct BatchProcessor {
    processor: Arc<EventProcessor>,
    chunk_events: usize,
    max_event_bytes: usize,
}

impl BatchProcessor {
    pub const MAX_REPORTED: usize = 20;

    pub fn new(
        processor: Arc<EventProcessor>,
        chunk_events: usize,
        max_event_bytes: usize,
    ) -> Self {
        Self {
            processor,
            chunk_events: chunk_events.max(1),
            max_event_bytes,
        }
    }

    /// Reads `input` line by line; every `chunk_events` accepted records go to `emit`.
    /// `progress` is told how many bytes were consumed so far. Blank lines are skipped.
    pub fn run<R: BufRead, E>(
        &self,
        project: &ProjectId,
        schemas: &ProjectSchemas,
        mut input: R,
        mut emit: impl FnMut(Vec<EventRecord>) -> Result<(), E>,
        mut progress: impl FnMut(u64),
    ) -> Result<ImportStats, BatchError<E>> {
        let mut stats = ImportStats::default();
        let mut chunk = Vec::with_capacity(self.chunk_events);
        let mut line = String::new();
        let mut consumed = 0u64;
        loop {
            line.clear();
            let n = input.read_line(&mut line).map_err(BatchError::Read)?;
            if n == 0 {
                break;
            }
            consumed += n as u64;
            stats.lines += 1;
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            match self.process_line(project, schemas, text) {
                Ok(r) => {
                    stats.accepted += 1;
                    chunk.extend(r);
                }
                Err(e) => {
                    stats.rejected += 1;
                    if stats.errors.len() < Self::MAX_REPORTED {
                        stats.errors.push((stats.lines, e));
                    }
                }
            }
            if chunk.len() >= self.chunk_events {
                emit(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(self.chunk_events),
                ))
                .map_err(BatchError::Emit)?;
                progress(consumed);
            }
        }
        if !chunk.is_empty() {
            emit(chunk).map_err(BatchError::Emit)?;
        }
        progress(consumed);
        Ok(stats)
    }

    fn process_line(
        &self,
        project: &ProjectId,
        schemas: &ProjectSchemas,
        text: &str,
    ) -> Result<Option<EventRecord>, FieldError> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(text)
            .map_err(|e| FieldError::new("malformed_json", "", e.to_string()))?;
        let ev = tally_collect::native::parse_event(raw, self.max_event_bytes)?;
        self.processor.process(project, schemas, ev, Utc::now())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError<E> {
    #[error("reading the input failed: {0}")]
    Read(std::io::Error),
    #[error("storing a chunk failed")]
    Emit(E),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProcessorConfig;

    #[test]
    fn good_lines_survive_bad_ones() {
        let bp = BatchProcessor::new(
            Arc::new(EventProcessor::new(ProcessorConfig::default())),
            2,
            32 << 10,
        );
        let input = "{\"event\":\"a\",\"user_id\":\"u\"}\n\nnot json\n{\"event\":\"b\",\"user_id\":\"u\"}\n{\"event\":\"c\"}\n{\"event\":\"d\",\"user_id\":\"u\"}";
        let mut chunks = Vec::new();
        let stats = bp
            .run(
                &ProjectId::generate(),
                &ProjectSchemas::default(),
                input.as_bytes(),
                |c| {
                    chunks.push(c.len());
                    Ok::<_, ()>(())
                },
                |_| {},
            )
            .unwrap();
        assert_eq!((stats.accepted, stats.rejected), (3, 2));
        assert_eq!(chunks, vec![2, 1]);
        assert_eq!(stats.errors[0].0, 3);
        assert_eq!(stats.errors[1].1.field, "user_id");
    }
}
