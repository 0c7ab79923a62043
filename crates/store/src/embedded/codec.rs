//! WAL entry payloads: one project's batch as an Arrow IPC stream.
//!
//! Layout: version byte `1`, the 17-byte project id, then the Arrow IPC stream of the batch.

use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use tally_core::ProjectId;

use crate::StoreError;
use crate::schema::event_schema;

const VERSION: u8 = 1;
const PROJECT_LEN: usize = 17;

pub(crate) fn encode(project: &ProjectId, batch: &RecordBatch) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(64 + batch.get_array_memory_size() / 2);
    out.push(VERSION);
    out.extend_from_slice(project.as_str().as_bytes());
    let mut w = StreamWriter::try_new(&mut out, &event_schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

pub(crate) fn decode(payload: &[u8]) -> Result<(ProjectId, Vec<RecordBatch>), StoreError> {
    let bad = |why: &str| StoreError::Internal(format!("undecodable WAL entry: {why}"));
    if payload.len() < 1 + PROJECT_LEN || payload[0] != VERSION {
        return Err(bad("unknown version"));
    }
    let project = std::str::from_utf8(&payload[1..1 + PROJECT_LEN])
        .ok()
        .and_then(ProjectId::parse)
        .ok_or_else(|| bad("bad project id"))?;
    let reader = StreamReader::try_new(&payload[1 + PROJECT_LEN..], None)?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((project, batches))
}
