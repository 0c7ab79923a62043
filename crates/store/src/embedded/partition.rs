//! Parquet partitions: one folder per project and UTC day, files sorted by (event, person, time)
//! with page statistics on pages of at most 8,192 rows (of at most 8 KiB in the person id
//! columns), ZSTD with dictionary encoding (delta encodings for the columns with about one value
//! per row). The sort
//! puts each event name's rows and each person's rows together, so a filter on `event` or on a
//! person reads only the pages that can hold them. Files are written beside their final name and renamed into place, so a
//! file under its final name is always complete; only the catalog makes it part of the table.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::DateTime;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{
    SortColumn, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::{ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::metadata::SortingColumn;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use tally_catalog::ParquetFileEntry;
use tally_core::ProjectId;

use crate::schema::{col, event_schema};
use crate::{Result, StoreError};

const DAY_US: i64 = 86_400_000_000;
/// Rows per data page at most: the granularity at which page statistics let a scan skip rows.
const PAGE_ROWS: usize = 8192;
/// Bytes per data page at most in the person columns (about 2,000 rows of them): a filter on
/// one person decodes only the pages its rows are in, and their borders are what it wastes.
const PERSON_PAGE_BYTES: usize = 8 * 1024;
/// The order of the rows in a file.
const FILE_ORDER: [&str; 3] = [col::EVENT, col::PERSON_ID, col::TIMESTAMP];

/// The folder that holds every Parquet file, relative to the data dir.
pub(crate) const EVENTS_DIR: &str = "events";

fn writer_properties() -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(1 << 20))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_sorting_columns(Some(
            FILE_ORDER
                .iter()
                .map(|name| SortingColumn {
                    column_idx: event_schema().index_of(name).unwrap_or(0) as i32,
                    descending: false,
                    nulls_first: false,
                })
                .collect(),
        ))
        // Random 16-byte ids do not compress with a dictionary; skip it for them.
        .set_column_dictionary_enabled(col::MESSAGE_ID.into(), false);
    // Columns with about one value per row (times, persons, sessions, addresses) get no
    // dictionary: a file's dictionary page holds nearly every value, and reading any one page of
    // the column means decompressing all of it, so a filter that selects a few pages (an event
    // name, a person) would pay for the whole column anyway. Delta encodings keep them small
    // instead: times and session ids are ascending within a person, and the person columns are
    // sorted, so consecutive rows share their prefix.
    for (name, encoding) in [
        (col::TIMESTAMP, Encoding::DELTA_BINARY_PACKED),
        (col::RECEIVED_AT, Encoding::DELTA_BINARY_PACKED),
        (col::SESSION_ID, Encoding::DELTA_BINARY_PACKED),
        (col::PERSON_ID, Encoding::DELTA_BYTE_ARRAY),
        (col::USER_ID, Encoding::DELTA_BYTE_ARRAY),
        (col::ANONYMOUS_ID, Encoding::DELTA_BYTE_ARRAY),
        (col::IP, Encoding::DELTA_BYTE_ARRAY),
    ] {
        builder = builder
            .set_column_dictionary_enabled(name.into(), false)
            .set_column_encoding(name.into(), encoding);
    }
    for name in [col::PERSON_ID, col::USER_ID, col::ANONYMOUS_ID] {
        builder = builder.set_column_data_page_size_limit(name.into(), PERSON_PAGE_BYTES);
    }
    // Person keys are hashes: no deltas to exploit, but a person's rows are adjacent, which ZSTD
    // finds in the plain values.
    builder
        .set_column_dictionary_enabled(col::PERSON_KEY.into(), false)
        .build()
}

fn day_of(ts_us: i64) -> String {
    DateTime::from_timestamp_micros(ts_us.div_euclid(DAY_US) * DAY_US)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "0000-00-00".into())
}

fn timestamps(
    batch: &RecordBatch,
) -> Result<&datafusion::arrow::array::PrimitiveArray<TimestampMicrosecondType>> {
    batch
        .column_by_name(col::TIMESTAMP)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| StoreError::Internal("batch without a timestamp column".into()))
}

/// Sorts `batches` by timestamp and writes one file per UTC day under the project's folder.
pub(crate) fn write_partitions(
    data_dir: &Path,
    project: &ProjectId,
    batches: &[RecordBatch],
) -> Result<Vec<ParquetFileEntry>> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Vec::new());
    }
    let all = concat_batches(&event_schema(), batches)?;
    let sorted = sort_by_time(&all)?;
    let ts = timestamps(&sorted)?;
    let mut out = Vec::new();
    let mut start = 0;
    while start < sorted.num_rows() {
        let day = ts.value(start).div_euclid(DAY_US);
        let mut end = start + 1;
        while end < sorted.num_rows() && ts.value(end).div_euclid(DAY_US) == day {
            end += 1;
        }
        let slice = sorted.slice(start, end - start);
        out.push(write_file(data_dir, project, &slice)?);
        start = end;
    }
    sync_dir(&data_dir.join(EVENTS_DIR).join(project.as_str()))?;
    Ok(out)
}

fn sort_by(batch: &RecordBatch, columns: &[&str]) -> Result<RecordBatch> {
    let mut keys = Vec::with_capacity(columns.len());
    for name in columns {
        let values = batch
            .column_by_name(name)
            .ok_or_else(|| StoreError::Internal(format!("batch without a {name} column")))?;
        keys.push(SortColumn {
            values: Arc::clone(values),
            options: None,
        });
    }
    let idx = lexsort_to_indices(&keys, None)?;
    Ok(take_record_batch(batch, &idx)?)
}

fn sort_by_time(batch: &RecordBatch) -> Result<RecordBatch> {
    sort_by(batch, &[col::TIMESTAMP])
}

/// Writes one file of rows that all fall on one UTC day, in [`FILE_ORDER`].
pub(crate) fn write_file(
    data_dir: &Path,
    project: &ProjectId,
    batch: &RecordBatch,
) -> Result<ParquetFileEntry> {
    let batch = &sort_by(batch, &FILE_ORDER)?;
    let ts = timestamps(batch)?;
    let (Some(min_ts), Some(max_ts)) = (
        datafusion::arrow::compute::min(ts),
        datafusion::arrow::compute::max(ts),
    ) else {
        return Err(StoreError::Internal("a file without rows".into()));
    };
    let day = day_of(min_ts);
    let rel: PathBuf = [
        EVENTS_DIR,
        project.as_str(),
        &day,
        &format!("{}.parquet", uuid::Uuid::now_v7()),
    ]
    .iter()
    .collect();
    let path = data_dir.join(&rel);
    let dir = path.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir.display(), e))?;
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).map_err(|e| StoreError::io(tmp.display(), e))?;
    let mut w = ArrowWriter::try_new(file, event_schema(), Some(writer_properties()))?;
    w.write(batch)?;
    let file = w.into_inner()?;
    file.sync_all()
        .map_err(|e| StoreError::io(tmp.display(), e))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(path.display(), e))?;
    sync_dir(dir)?;
    Ok(ParquetFileEntry {
        path: rel.to_string_lossy().into_owned(),
        project: project.clone(),
        day,
        rows: batch.num_rows() as u64,
        bytes,
        min_ts,
        max_ts,
    })
}

/// Reads whole files back (for compaction and erasure), in the current layout.
pub(crate) fn read_file(path: &Path) -> Result<Vec<RecordBatch>> {
    read_columns(path, None)?
        .into_iter()
        .map(crate::schema::upgrade_batch)
        .collect()
}

/// Whether the file at `path` was written before the `person_key` column (see
/// [`crate::schema::upgrade_batch`]); only its footer is read.
pub(crate) fn lacks_person_key(path: &Path) -> Result<bool> {
    let file = File::open(path).map_err(|e| StoreError::io(path.display(), e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    Ok(builder.schema().column_with_name(col::PERSON_KEY).is_none())
}

/// Reads some columns (all when `None`) of a file.
pub(crate) fn read_columns(path: &Path, columns: Option<&[&str]>) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(|e| StoreError::io(path.display(), e))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(64 * 1024);
    if let Some(names) = columns {
        let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
        builder = builder.with_projection(mask);
    }
    Ok(builder.build()?.collect::<Result<Vec<_>, _>>()?)
}

/// Merges the files of one day into one, in [`FILE_ORDER`]. Returns the new entry (the caller commits it).
pub(crate) fn compact_files(
    data_dir: &Path,
    project: &ProjectId,
    files: &[ParquetFileEntry],
) -> Result<Option<ParquetFileEntry>> {
    let mut batches = Vec::new();
    for f in files {
        batches.extend(read_file(&data_dir.join(&f.path))?);
    }
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(None);
    }
    let all = concat_batches(&event_schema(), &batches)?;
    Ok(Some(write_file(data_dir, project, &all)?))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir.display(), e))
}

/// Column values as they appear in a file, for tests and start-up scans.
pub(crate) fn fixed_binary_values(batch: &RecordBatch, name: &str) -> Vec<Option<[u8; 16]>> {
    let Some(arr) = batch
        .column_by_name(name)
        .and_then(|c| c.as_fixed_size_binary_opt())
    else {
        return Vec::new();
    };
    (0..arr.len())
        .map(|i| {
            if arr.is_null(i) {
                None
            } else {
                arr.value(i).try_into().ok()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::EventRecord;

    #[test]
    fn splits_by_day_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        let p = ProjectId::generate();
        let mk = |ts: i64| EventRecord {
            timestamp: ts,
            event: "e".into(),
            person_id: "p".into(),
            ..Default::default()
        };
        let b = crate::schema::records_to_batch(&[mk(DAY_US + 5), mk(3), mk(DAY_US + 1), mk(1)])
            .unwrap();
        let files = write_partitions(dir.path(), &p, &[b]).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].day, "1970-01-01");
        assert_eq!((files[0].min_ts, files[0].max_ts), (1, 3));
        assert_eq!((files[1].min_ts, files[1].max_ts), (DAY_US + 1, DAY_US + 5));
        let back = read_file(&dir.path().join(&files[1].path)).unwrap();
        assert_eq!(back.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        let merged = compact_files(dir.path(), &p, &files).unwrap().unwrap();
        assert_eq!(merged.rows, 4);
    }

    #[test]
    fn rows_are_in_event_person_time_order_with_the_day_s_time_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let p = ProjectId::generate();
        let mk = |ts: i64, event: &str, person: &str| EventRecord {
            timestamp: ts,
            event: event.into(),
            person_id: person.into(),
            ..Default::default()
        };
        let rows = [
            mk(50, "signup", "b"),
            mk(10, "pageview", "b"),
            mk(90, "pageview", "a"),
            mk(20, "signup", "a"),
            mk(5, "pageview", "b"),
        ];
        let b = crate::schema::records_to_batch(&rows).unwrap();
        let files = write_partitions(dir.path(), &p, &[b]).unwrap();
        assert_eq!(files.len(), 1);
        // The time bounds hold although the first and last rows are not the earliest and latest.
        assert_eq!((files[0].min_ts, files[0].max_ts), (5, 90));
        let back = read_file(&dir.path().join(&files[0].path)).unwrap();
        let b = &back[0];
        let text = |name: &str| -> Vec<String> {
            let c = b.column_by_name(name).unwrap().as_string::<i32>();
            (0..c.len()).map(|i| c.value(i).to_owned()).collect()
        };
        let ts: Vec<i64> = timestamps(b).unwrap().values().to_vec();
        assert_eq!(
            text("event"),
            ["pageview", "pageview", "pageview", "signup", "signup"]
        );
        assert_eq!(text("person_id"), ["a", "b", "b", "a", "b"]);
        assert_eq!(ts, [90, 5, 10, 20, 50]);
    }

    #[test]
    fn columns_with_one_value_per_row_have_no_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let p = ProjectId::generate();
        let rows: Vec<EventRecord> = (0..100)
            .map(|i| EventRecord {
                timestamp: i,
                event: "pageview".into(),
                person_id: format!("p{i}"),
                browser: Some("Firefox".into()),
                ..Default::default()
            })
            .collect();
        let b = crate::schema::records_to_batch(&rows).unwrap();
        let files = write_partitions(dir.path(), &p, &[b]).unwrap();
        let file = File::open(dir.path().join(&files[0].path)).unwrap();
        let meta = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .metadata()
            .clone();
        let chunk = |name: &str| {
            let i = event_schema().index_of(name).unwrap();
            meta.row_group(0).column(i).clone()
        };
        for name in [col::TIMESTAMP, col::PERSON_ID, col::SESSION_ID, col::IP] {
            assert!(
                chunk(name).dictionary_page_offset().is_none(),
                "{name} has a dictionary"
            );
        }
        assert!(chunk("browser").dictionary_page_offset().is_some());
        assert!(chunk(col::EVENT).dictionary_page_offset().is_some());
    }

    #[test]
    fn person_columns_have_smaller_pages_than_the_others() {
        use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
        use datafusion::parquet::file::metadata::PageIndexPolicy;

        let dir = tempfile::tempdir().unwrap();
        let p = ProjectId::generate();
        // Ids as the SDKs send them: a prefix and 16 hex digits, one person per row.
        let rows: Vec<EventRecord> = (0..3 * PAGE_ROWS as i64)
            .map(|i| EventRecord {
                timestamp: i,
                event: "pageview".into(),
                person_id: format!("u_{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                ..Default::default()
            })
            .collect();
        let b = crate::schema::records_to_batch(&rows).unwrap();
        let files = write_partitions(dir.path(), &p, &[b]).unwrap();
        let file = File::open(dir.path().join(&files[0].path)).unwrap();
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let meta = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
            .unwrap()
            .metadata()
            .clone();
        let pages = |name: &str| {
            let i = event_schema().index_of(name).unwrap();
            meta.offset_index().unwrap()[0][i].page_locations().len()
        };
        // Every other column pages by row count: 3 pages of 8,192 rows.
        assert_eq!(pages(col::TIMESTAMP), 3);
        assert_eq!(pages(col::EVENT), 3);
        // A one-person filter decodes a page of about 8 KiB of ids, not 8,192 of them.
        assert!(
            pages(col::PERSON_ID) >= 12,
            "{} pages",
            pages(col::PERSON_ID)
        );
    }
}
