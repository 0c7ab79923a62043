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
    // Entries written before the `person_key` column get it here.
    let batches = reader
        .map(|b| crate::schema::upgrade_batch(b?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((project, batches))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Int64Type, Schema};
    use tally_core::EventRecord;

    use super::*;
    use crate::schema::{col, person_key, records_to_batch};

    #[test]
    fn entries_of_the_layout_before_person_keys_decode_with_them() {
        let records: Vec<EventRecord> = ["ann", "bob", "ann"]
            .iter()
            .map(|p| EventRecord {
                event: "e".into(),
                person_id: (*p).into(),
                ..Default::default()
            })
            .collect();
        let batch = records_to_batch(&records).unwrap();
        let project = ProjectId::parse("p0123456789abcdef").unwrap();
        assert_eq!(
            decode(&encode(&project, &batch).unwrap()).unwrap().1,
            std::slice::from_ref(&batch)
        );

        // An entry written before the column: the same batch without it.
        let key = batch.schema().index_of(col::PERSON_KEY).unwrap();
        let keep: Vec<usize> = (0..batch.num_columns()).filter(|&i| i != key).collect();
        let old = batch.project(&keep).unwrap();
        let mut payload = vec![VERSION];
        payload.extend_from_slice(project.as_str().as_bytes());
        let mut w =
            StreamWriter::try_new(&mut payload, &Arc::new(Schema::clone(&old.schema()))).unwrap();
        w.write(&old).unwrap();
        w.finish().unwrap();
        drop(w);
        let (p, decoded) = decode(&payload).unwrap();
        assert_eq!((p, decoded), (project, vec![batch.clone()]));
        let keys = batch.column(key).as_primitive::<Int64Type>();
        assert_eq!(keys.value(0), person_key("ann"));
        assert_eq!(keys.value(0), keys.value(2));
        assert_ne!(keys.value(0), keys.value(1));
    }
}
