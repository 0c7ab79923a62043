//! The embedded engine: WAL → in-memory Arrow buffer → Parquet files, queried with DataFusion.
//!
//! Write path: [`EmbeddedStore::write`] drops events whose `message_id` was seen, encodes each
//! project's batch as Arrow IPC, appends it to the WAL, fsyncs (one fsync per group of requests:
//! the `EventManager` groups them) and only then makes the rows visible in the buffer and
//! returns. Flush: the WAL segment is rotated and the buffer sealed in one step, the sealed rows
//! are written to Parquet, and one catalog transaction records the files together with the WAL
//! segment they cover; the segment is then deleted. A crash at any point replays exactly the
//! segments that the catalog does not cover, so nothing acknowledged is lost or doubled.

mod buffer;
mod codec;
mod counts;
mod dedup;
mod engine;
mod erase;
mod json;
mod partition;
mod percentile;
mod retention;
mod rollup;
mod sequences;
mod sql;

pub use erase::{ErasureReport, PersonErasure};
pub use retention::{RetentionReport, RetentionRule};

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::prelude::{DataFrame, SessionContext};
use engine::Sources;
use parking_lot::{Mutex, RwLock};
use tally_catalog::{Catalog, ParquetFileEntry};
use tally_core::ProjectId;
use tally_wal::{Wal, WalConfig};

use self::buffer::Buffer;
use self::dedup::DedupIndex;
pub use self::sql::{SqlLimits, SqlResult};
use crate::plan::{
    AggregateQuery, FieldRef, Lookups, Measure, PERSON_COLUMN, PathQuery, ResultTable,
    RetentionCounts, RetentionQuery, RollupDef, RollupStatus, SESSION_LOOKAROUND_US, SessionQuery,
    StepEvents, StepQuery,
};
use crate::schema::{col, records_to_batch};
use crate::{ProjectBatch, Result, Store, StoreError, WriteOutcome};

const DAY_US: i64 = 86_400_000_000;

/// Settings of the embedded engine. The defaults suit one machine with a few GiB of memory.
#[derive(Debug, Clone)]
pub struct EmbeddedStoreConfig {
    pub data_dir: PathBuf,
    /// A WAL segment is closed once it is this large.
    pub wal_segment_bytes: u64,
    /// The buffer is flushed to Parquet once it holds this many rows...
    pub flush_rows: usize,
    /// ...or when its oldest rows are this old.
    pub flush_interval: Duration,
    /// Writes are refused (back-pressure) while the buffer holds this many rows.
    pub max_buffer_rows: usize,
    /// How long a `message_id` is remembered for de-duplication, by receive time.
    pub dedup_window: Duration,
    /// A day's files are merged into one when there are more than this many.
    pub compact_after_files: usize,
    /// Parallelism of queries.
    pub query_partitions: usize,
}

impl EmbeddedStoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            wal_segment_bytes: 64 << 20,
            flush_rows: 1_000_000,
            flush_interval: Duration::from_secs(60),
            max_buffer_rows: 4_000_000,
            dedup_window: Duration::from_secs(24 * 3600),
            compact_after_files: 8,
            query_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// What a flush wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub rows: u64,
    pub files: usize,
    pub compacted_files: usize,
}

/// The embedded engine. Cheap to clone (shares one inner state).
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    /// Set by [`EmbeddedStore::as_of`]: only events received before this instant are seen.
    received_before: Option<i64>,
}

/// A lookup batch with the catalog version it was read at; `None` when there was nothing to
/// look up.
type Versioned = (i64, Option<RecordBatch>);

/// Which lookup batch of a project.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LookupKind {
    Overrides,
    Persons,
    Groups(String),
}

struct Inner {
    config: EmbeddedStoreConfig,
    catalog: Arc<Catalog>,
    ctx: SessionContext,
    /// `None` when opened read-only.
    writer: Option<Mutex<Writer>>,
    buffer: RwLock<Buffer>,
    flush_lock: tokio::sync::Mutex<()>,
    last_flush: Mutex<Instant>,
    /// A read-only store sees the files that existed when it opened, and no later ones.
    pinned_files: Option<Vec<ParquetFileEntry>>,
    /// Registered rollups by project and id.
    rollups: Mutex<HashMap<(ProjectId, String), rollup::Rollup>>,
    /// Projects whose stored events are being rewritten (retention, erasure), with how many
    /// such runs: their rollups are not registered until the runs end.
    suspended: Mutex<HashMap<ProjectId, usize>>,
    /// Lookup batches (person overrides, person properties, groups of a type; see
    /// `tally_catalog::persons`) by project, with the catalog version each was read at.
    lookups: Mutex<HashMap<(ProjectId, LookupKind), Versioned>>,
    _lock: Option<File>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("data_dir", &self.config.data_dir)
            .field("read_only", &self.writer.is_none())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Writer {
    wal: Wal,
    dedup: DedupIndex,
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

fn day_string(ts_us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(ts_us.div_euclid(DAY_US) * DAY_US)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "0000-00-00".into())
}

impl EmbeddedStore {
    /// Opens the data directory for writing: takes its lock, cleans up after a crash, replays the
    /// WAL and rebuilds the de-duplication index.
    pub fn open(config: EmbeddedStoreConfig, catalog: Arc<Catalog>) -> Result<Self> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir.display(), e))?;
        let lock = take_lock(dir)?;
        remove_unrecorded_files(dir, &catalog)?;
        upgrade_files(dir, &catalog)?;

        let persisted = catalog.wal_persisted_through()?.unwrap_or(0);
        let mut wal_config = WalConfig::new(dir.join("wal"));
        wal_config.segment_max_bytes = config.wal_segment_bytes;
        wal_config.first_segment_id_at_least = persisted + 1;
        let (mut wal, entries) = Wal::open(wal_config)?;
        let mut buffer = Buffer::default();
        let mut dedup = DedupIndex::new(config.dedup_window.as_micros() as i64);
        let mut replayed = 0usize;
        for entry in entries {
            if entry.segment <= persisted {
                continue;
            }
            let (project, batches) = codec::decode(&entry.payload)?;
            for b in batches {
                replayed += b.num_rows();
                remember_ids(&mut dedup, &project, &b);
                buffer.push(&project, b);
            }
        }
        if persisted > 0 {
            wal.remove_segments_through(persisted)?;
        }
        rebuild_dedup(dir, &catalog, &mut dedup, config.dedup_window)?;
        tracing::info!(
            replayed_rows = replayed,
            dedup_ids = dedup.len(),
            "embedded store opened"
        );
        let ctx = engine::new_context(config.query_partitions)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                catalog,
                ctx,
                writer: Some(Mutex::new(Writer { wal, dedup })),
                buffer: RwLock::new(buffer),
                flush_lock: tokio::sync::Mutex::new(()),
                last_flush: Mutex::new(Instant::now()),
                pinned_files: None,
                rollups: Mutex::new(HashMap::new()),
                suspended: Mutex::new(HashMap::new()),
                lookups: Mutex::new(HashMap::new()),
                _lock: Some(lock),
            }),
            received_before: None,
        })
    }

    /// Opens a consistent read-only view of the data directory, even while a server writes to it:
    /// the Parquet files recorded now plus the WAL entries they do not cover.
    pub fn open_read_only(config: EmbeddedStoreConfig, catalog: Arc<Catalog>) -> Result<Self> {
        let wal_dir = config.data_dir.join("wal");
        for _ in 0..10 {
            let before = catalog.wal_persisted_through()?.unwrap_or(0);
            let entries = if wal_dir.exists() {
                Wal::read_all(&wal_dir)?
            } else {
                Vec::new()
            };
            let files = catalog.all_files()?;
            let after = catalog.wal_persisted_through()?.unwrap_or(0);
            if before != after {
                continue; // a flush committed meanwhile: look again
            }
            let mut buffer = Buffer::default();
            for entry in entries.into_iter().filter(|e| e.segment > after) {
                let (project, batches) = codec::decode(&entry.payload)?;
                for b in batches {
                    buffer.push(&project, b);
                }
            }
            let ctx = engine::new_context(config.query_partitions)?;
            return Ok(Self {
                inner: Arc::new(Inner {
                    config,
                    catalog,
                    ctx,
                    writer: None,
                    buffer: RwLock::new(buffer),
                    flush_lock: tokio::sync::Mutex::new(()),
                    last_flush: Mutex::new(Instant::now()),
                    pinned_files: Some(files),
                    rollups: Mutex::new(HashMap::new()),
                    suspended: Mutex::new(HashMap::new()),
                    lookups: Mutex::new(HashMap::new()),
                    _lock: None,
                }),
                received_before: None,
            });
        }
        Err(StoreError::Internal(
            "the data directory kept changing while it was being read".into(),
        ))
    }

    /// The same store seeing only the events received before `received_before` (microseconds
    /// since the epoch): what it answered at that instant, for reproducible reports. Person
    /// merges and properties are read as they are now. Never answered from rollups.
    pub fn as_of(&self, received_before: i64) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            received_before: Some(received_before),
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    /// Rows in the buffer (not yet in Parquet).
    pub fn buffered_rows(&self) -> usize {
        self.inner.buffer.read().total_rows()
    }

    /// The files and batches that may hold the project's events with `from <= timestamp < to`.
    fn sources(&self, project: &ProjectId, from: i64, to: i64) -> Result<Sources> {
        let (from_day, to_day) = (day_string(from), day_string(to.saturating_sub(1)));
        // Files and buffer are read under the buffer's lock, so a concurrent flush (which
        // commits files and drops the sealed rows under the same lock) is seen before or after.
        let buffer = self.inner.buffer.read();
        let batches = buffer.batches_for(project);
        let entries = match &self.inner.pinned_files {
            Some(files) => files
                .iter()
                .filter(|f| &f.project == project && f.day >= from_day && f.day <= to_day)
                .cloned()
                .collect(),
            None => self.inner.catalog.files(project, &from_day, &to_day)?,
        };
        drop(buffer);
        let dir = &self.inner.config.data_dir;
        let mut sources = Sources {
            batches,
            ..Sources::default()
        };
        for f in entries.iter().filter(|f| f.max_ts >= from && f.min_ts < to) {
            let path = dir.join(&f.path).to_string_lossy().into_owned();
            if f.min_ts >= from && f.max_ts < to {
                sources.inside.push(engine::InsideFile {
                    path,
                    rows: f.rows,
                    min_ts: f.min_ts,
                    max_ts: f.max_ts,
                });
            } else {
                sources.edge.push(path);
            }
        }
        Ok(sources)
    }

    /// A DataFrame of exactly the project's events in `[from, to)`, their `person_id` mapped
    /// through the project's person overrides, so that merged persons count once. With the
    /// `lookups` a query needs, also the [`PERSON_COLUMN`] of each event's person's
    /// properties and a `group:TYPE` column of each event's group's properties per type.
    pub async fn frame(
        &self,
        project: &ProjectId,
        from: i64,
        to: i64,
        lookups: &Lookups,
    ) -> Result<DataFrame> {
        let sources = self.sources(project, from, to)?;
        self.frame_of(project, sources, from, to, lookups).await
    }

    /// [`Self::frame`] over `sources` (of `[from, to)`, perhaps with some files taken out).
    async fn frame_of(
        &self,
        project: &ProjectId,
        sources: Sources,
        from: i64,
        to: i64,
        lookups: &Lookups,
    ) -> Result<DataFrame> {
        let mut frame = engine::range_frame(&self.inner.ctx, sources, from, to).await?;
        if let Some(w) = self.received_before {
            frame = frame.filter(engine::received_before(w))?;
        }
        if let Some(batch) = self.person_overrides(project)? {
            frame = engine::with_overrides(&self.inner.ctx, frame, batch)?;
        }
        if lookups.person {
            let persons = self.lookup(project, LookupKind::Persons)?;
            frame = engine::with_persons(&self.inner.ctx, frame, persons)?;
        }
        for t in &lookups.group_types {
            let groups = self.lookup(project, LookupKind::Groups(t.clone()))?;
            frame = engine::with_groups(&self.inner.ctx, frame, t, groups)?;
        }
        Ok(frame)
    }

    /// A lookup batch of the project, read again from the catalog when the version it depends
    /// on moved (merges for the overrides; any person or group change for the others).
    fn lookup(&self, project: &ProjectId, kind: LookupKind) -> Result<Option<RecordBatch>> {
        let c = &self.inner.catalog;
        let version = match kind {
            LookupKind::Overrides => c.identity_version(project)?,
            LookupKind::Persons | LookupKind::Groups(_) => c.person_properties_version(project)?,
        };
        let key = (project.clone(), kind);
        if let Some((v, batch)) = self.inner.lookups.lock().get(&key)
            && *v == version
        {
            return Ok(batch.clone());
        }
        let (version, rows, column) = match &key.1 {
            LookupKind::Overrides => {
                let o = c.person_overrides(project)?;
                (o.version, o.pairs, engine::MERGED_PERSON.to_owned())
            }
            LookupKind::Persons => {
                let (v, rows) = c.person_properties(project)?;
                (v, rows, PERSON_COLUMN.to_owned())
            }
            LookupKind::Groups(t) => {
                let (v, rows) = c.groups_of_type(project, t)?;
                (v, rows, engine::group_column(t))
            }
        };
        let batch = if rows.is_empty() {
            None
        } else if key.1 == LookupKind::Overrides {
            Some(engine::overrides_batch(&rows)?)
        } else {
            Some(engine::lookup_batch(&column, &rows)?)
        };
        let mut lookups = self.inner.lookups.lock();
        // Keyed also by the group types queries name: bounded, whatever they name.
        if lookups.len() >= 10_000 {
            lookups.clear();
        }
        lookups.insert(key, (version, batch.clone()));
        Ok(batch)
    }

    /// The project's person overrides, if it has any.
    fn person_overrides(&self, project: &ProjectId) -> Result<Option<RecordBatch>> {
        self.lookup(project, LookupKind::Overrides)
    }

    /// The sources of `[from, to)` widened by [`SESSION_LOOKAROUND_US`] on each side, so that
    /// sessions crossing the range's edges are whole.
    async fn session_frame(
        &self,
        project: &ProjectId,
        from: i64,
        to: i64,
        lookups: &Lookups,
    ) -> Result<DataFrame> {
        self.frame(
            project,
            from.saturating_sub(SESSION_LOOKAROUND_US),
            to.saturating_add(SESSION_LOOKAROUND_US),
            lookups,
        )
        .await
    }

    /// Writes the buffer to Parquet now.
    pub async fn flush_now(&self) -> Result<FlushReport> {
        // Its own task, holding the lock until the flush ends: a caller that is cancelled
        // (a task aborted at shutdown) cannot release the lock while the flush still runs.
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let _one_at_a_time = inner.flush_lock.lock().await;
            let i = Arc::clone(&inner);
            tokio::task::spawn_blocking(move || i.flush_blocking())
                .await
                .map_err(|e| StoreError::Internal(format!("flush task failed: {e}")))?
        })
        .await
        .map_err(|e| StoreError::Internal(format!("flush task failed: {e}")))?
    }

    /// Flushes when the buffer is large or old enough, expires de-duplication ids and removes
    /// files deleted by compaction a while ago. Called periodically by the server.
    pub async fn maintain(&self) -> Result<Option<FlushReport>> {
        let due = {
            let rows = self.inner.buffer.read().open_rows();
            rows >= self.inner.config.flush_rows
                || (rows > 0
                    && self.inner.last_flush.lock().elapsed() >= self.inner.config.flush_interval)
        };
        if let Some(w) = &self.inner.writer {
            w.lock().dedup.expire(now_us());
        }
        let report = if due {
            Some(self.flush_now().await?)
        } else {
            None
        };
        self.purge_replaced_files(Duration::from_secs(600))?;
        Ok(report)
    }

    /// Deletes from disk the files that compaction, retention or an erasure replaced more than
    /// `ago` ago (queries that started before the swap may still be reading younger ones).
    pub fn purge_replaced_files(&self, ago: Duration) -> Result<()> {
        let cutoff = if ago.is_zero() {
            "9999-12-31T00:00:00Z".to_owned()
        } else {
            (Utc::now() - chrono::Duration::from_std(ago).unwrap_or_default())
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        for path in self.inner.catalog.purge_deleted_files(&cutoff)? {
            let p = self.inner.config.data_dir.join(&path);
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::warn!(path = %p.display(), error = %e, "could not remove a replaced file");
            }
        }
        Ok(())
    }
}

impl EmbeddedStore {
    /// Registers (or replaces) rollup `id` of `def.project` and builds it: from its snapshot when
    /// that matches the catalog's WAL watermark, otherwise from all of the project's events. Queries
    /// use the raw events until it is ready.
    pub async fn register_rollup(&self, id: &str, def: RollupDef) -> Result<()> {
        def.supported().map_err(StoreError::InvalidQuery)?;
        self.inner.writer()?;
        let key = (def.project.clone(), id.to_owned());
        {
            // Checked and inserted under the suspension lock, which `suspend_rollups` holds
            // while it takes a project's rollups out.
            let suspended = self.inner.suspended.lock();
            if suspended.contains_key(&def.project) {
                // Registered when the rewrite that suspended the project's rollups ends.
                return Ok(());
            }
            let mut rollups = self.inner.rollups.lock();
            if rollups
                .get(&key)
                .is_some_and(|r| r.def == def && !matches!(r.state, rollup::State::Failed(_)))
            {
                return Ok(());
            }
            rollups.insert(
                key.clone(),
                rollup::Rollup {
                    id: id.to_owned(),
                    def: def.clone(),
                    state: rollup::State::Building,
                },
            );
        }
        if let Err(e) = self.build_rollup(id, &def).await {
            if let Some(r) = self.inner.rollups.lock().get_mut(&key)
                && r.def == def
            {
                r.state = rollup::State::Failed(e.to_string());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Forgets rollup `id` of `project` and deletes its snapshot.
    pub fn drop_rollup(&self, project: &ProjectId, id: &str) -> Result<()> {
        self.inner
            .rollups
            .lock()
            .remove(&(project.clone(), id.to_owned()));
        let path = rollup::snapshot_path(&self.inner.config.data_dir, project.as_str(), id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(path.display(), e)),
        }
    }

    /// The ids of the project's rollups.
    pub fn rollup_ids(&self, project: &ProjectId) -> Vec<String> {
        self.inner
            .rollups
            .lock()
            .keys()
            .filter(|(p, _)| p == project)
            .map(|(_, id)| id.clone())
            .collect()
    }

    pub fn rollup_status(&self, project: &ProjectId, id: &str) -> Option<RollupStatus> {
        self.inner
            .rollups
            .lock()
            .get(&(project.clone(), id.to_owned()))
            .map(rollup::Rollup::status)
    }

    /// Answers `q` from a ready rollup with the same events, groups and measure, if there is one
    /// and the query's buckets fall on whole UTC hours.
    pub fn aggregate_from_rollup(&self, q: &AggregateQuery) -> Option<ResultTable> {
        if self.received_before.is_some() {
            // Rollups hold every event received so far.
            return None;
        }
        // Sketches count the ids events were stored under; once persons merged, only the raw
        // events (through the overrides) count them right.
        let person_id = FieldRef::Column(col::PERSON_ID.into());
        let reads_person_id = q.measure == Measure::UniquePersons
            || q.group_by.contains(&person_id)
            || q.filters.iter().any(|f| f.field == person_id);
        if reads_person_id && self.inner.catalog.identity_version(&q.project).unwrap_or(1) > 0 {
            return None;
        }
        let def = RollupDef::of(q);
        let rollups = self.inner.rollups.lock();
        rollups
            .values()
            .filter(|r| r.def == def)
            .find_map(|r| r.answer(q))
    }

    async fn build_rollup(&self, id: &str, def: &RollupDef) -> Result<()> {
        let inner = &self.inner;
        // No flush while building: the Parquet files and the watermark stay put.
        let _no_flush = inner.flush_lock.lock().await;
        if inner.suspended.lock().contains_key(&def.project) {
            // A rewrite began while this build waited for the lock: the files are changing,
            // and the rewrite registers the rollup again when it ends.
            let key = (def.project.clone(), id.to_owned());
            let mut rollups = inner.rollups.lock();
            if rollups.get(&key).is_some_and(|r| r.def == *def) {
                rollups.remove(&key);
            }
            return Ok(());
        }
        let watermark = inner.catalog.wal_persisted_through()?.unwrap_or(0);
        let path = rollup::snapshot_path(&inner.config.data_dir, def.project.as_str(), id);
        let snapshot = rollup::read_snapshot(&path)
            .filter(|s| s.key == rollup::def_key(def) && s.watermark == watermark);
        let sealed = match snapshot {
            Some(s) => s.cells.into_iter().collect(),
            None => {
                let files: Vec<String> = inner
                    .catalog
                    .files(&def.project, "0000-00-00", "9999-12-31")?
                    .iter()
                    .map(|f| {
                        inner
                            .config
                            .data_dir
                            .join(&f.path)
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect();
                let rows = if files.is_empty() {
                    Vec::new()
                } else {
                    let frame = engine::events_frame(&inner.ctx, files, Vec::new()).await?;
                    engine::partial_rows(frame, def).await?
                };
                let cells = rollup::cells_from(&rows);
                rollup::write_snapshot(&path, &rollup::Snapshot::new(def, watermark, &cells))?;
                tracing::info!(
                    rollup = id,
                    cells = cells.len(),
                    "rollup built from storage"
                );
                cells
            }
        };
        // The buffered events, under the writer's lock so that no write slips between this and
        // the rollup becoming ready.
        let inner2 = Arc::clone(inner);
        let (def2, id2) = (def.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || {
            let w = inner2.writer()?.lock();
            let segment = w.wal.current_segment().unwrap_or(watermark);
            let batches = inner2.buffer.read().batches_for(&def2.project);
            let rows = if batches.is_empty() {
                Vec::new()
            } else {
                tokio::runtime::Handle::current().block_on(async {
                    let frame = engine::events_frame(&inner2.ctx, Vec::new(), batches).await?;
                    engine::partial_rows(frame, &def2).await
                })?
            };
            // Become ready while still holding the writer's lock.
            let state = rollup::ready(sealed, watermark, segment, rollup::cells_from(&rows));
            if let Some(r) = inner2.rollups.lock().get_mut(&(def2.project.clone(), id2))
                && r.def == def2
            {
                r.state = state;
            }
            drop(w);
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Internal(format!("rollup task failed: {e}")))?
    }
}

impl Inner {
    fn writer(&self) -> Result<&Mutex<Writer>> {
        self.writer
            .as_ref()
            .ok_or_else(|| StoreError::Internal("the store was opened read-only".into()))
    }

    fn write_blocking(&self, batches: Vec<ProjectBatch>) -> Result<WriteOutcome> {
        let mut w = self.writer()?.lock();
        let incoming: usize = batches.iter().map(|b| b.records.len()).sum();
        if self.buffer.read().total_rows() + incoming > self.config.max_buffer_rows {
            return Err(StoreError::Overloaded(
                "the in-memory buffer is full while Parquet files are written".into(),
            ));
        }
        let mut outcome = WriteOutcome::default();
        let mut fresh: HashSet<(ProjectId, [u8; 16])> = HashSet::new();
        let mut encoded = Vec::with_capacity(batches.len());
        for ProjectBatch {
            project,
            mut records,
        } in batches
        {
            records.retain(|r| match &r.message_id {
                Some(id)
                    if w.dedup.contains(&project, id) || !fresh.insert((project.clone(), *id)) =>
                {
                    outcome.duplicates += 1;
                    false
                }
                _ => true,
            });
            if records.is_empty() {
                continue;
            }
            outcome.stored += records.len();
            let batch = records_to_batch(&records)?;
            let payload = codec::encode(&project, &batch)?;
            encoded.push((project, batch, payload));
        }
        if encoded.is_empty() {
            return Ok(outcome);
        }
        let payloads: Vec<&[u8]> = encoded.iter().map(|(_, _, p)| p.as_slice()).collect();
        w.wal.append(&payloads)?;
        w.wal.sync()?;
        // Durable from here on: remember the ids and make the rows visible.
        let segment = w.wal.current_segment().unwrap_or(0);
        let mut written = Vec::with_capacity(encoded.len());
        {
            let mut buffer = self.buffer.write();
            for (project, batch, _) in encoded {
                remember_ids(&mut w.dedup, &project, &batch);
                buffer.push(&project, batch.clone());
                written.push((project, batch));
            }
        }
        // Still under the writer's lock, so a flush cannot seal this segment before its
        // rollup cells are in.
        self.apply_rollups(segment, &written);
        Ok(outcome)
    }

    /// Adds freshly written batches to the project's rollups. A rollup whose update fails is
    /// marked failed (queries then use the raw events) rather than failing a durable write.
    fn apply_rollups(&self, segment: u64, written: &[(ProjectId, RecordBatch)]) {
        let defs: Vec<(ProjectId, String, RollupDef)> = {
            let rollups = self.rollups.lock();
            if rollups.is_empty() {
                return;
            }
            rollups
                .values()
                .filter(|r| matches!(r.state, rollup::State::Ready { .. }))
                .map(|r| (r.def.project.clone(), r.id.clone(), r.def.clone()))
                .collect()
        };
        for (project, id, def) in defs {
            let batches: Vec<RecordBatch> = written
                .iter()
                .filter(|(p, _)| *p == project)
                .map(|(_, b)| b.clone())
                .collect();
            if batches.is_empty() {
                continue;
            }
            let rows = tokio::runtime::Handle::current().block_on(async {
                let frame = engine::events_frame(&self.ctx, Vec::new(), batches).await?;
                engine::partial_rows(frame, &def).await
            });
            let mut rollups = self.rollups.lock();
            let Some(r) = rollups.get_mut(&(project, id)) else {
                continue;
            };
            match rows {
                Ok(rows) => r.apply(segment, &rows),
                Err(e) => {
                    tracing::error!(rollup = %r.id, error = %e, "rollup update failed");
                    r.state = rollup::State::Failed(e.to_string());
                }
            }
        }
    }

    /// Moves the rollups' cells of the segments through `through` (now in Parquet) into their
    /// sealed part and writes that to disk.
    fn seal_rollups(&self, through: u64) {
        let snapshots: Vec<(PathBuf, rollup::Snapshot)> = {
            let mut rollups = self.rollups.lock();
            rollups
                .values_mut()
                .filter_map(|r| {
                    let path =
                        rollup::snapshot_path(&self.config.data_dir, r.def.project.as_str(), &r.id);
                    r.seal(through).map(|s| (path, s))
                })
                .collect()
        };
        for (path, snap) in snapshots {
            if let Err(e) = rollup::write_snapshot(&path, &snap) {
                // The rollup stays correct in memory; a restart rebuilds it.
                tracing::warn!(path = %path.display(), error = %e, "could not persist a rollup");
            }
        }
    }

    fn flush_blocking(&self) -> Result<FlushReport> {
        self.flush_omitting(None).map(|(report, _)| report)
    }

    /// Flushes, leaving out of the Parquet files the rows that `omit` matches (an erasure):
    /// they leave the buffer, and the WAL segments that held them are deleted, like any other
    /// flushed rows. Returns the report and how many rows were left out.
    fn flush_omitting(&self, omit: Option<&erase::Omit<'_>>) -> Result<(FlushReport, u64)> {
        let (sealed_segment, mut sealed) = {
            let mut w = self.writer()?.lock();
            let seg = w.wal.rotate()?;
            let sealed = self.buffer.write().seal();
            (seg, sealed)
        };
        let mut omitted = 0u64;
        if let Some(omit) = omit {
            for (project, batches) in sealed.iter_mut().filter(|(p, _)| p == omit.project) {
                let mut kept = Vec::with_capacity(batches.len());
                for b in batches.drain(..) {
                    let (b, removed) = match omit.without(&b) {
                        Ok(x) => x,
                        Err(e) => {
                            self.buffer.write().unseal();
                            return Err(e);
                        }
                    };
                    omitted += removed;
                    if b.num_rows() > 0 {
                        kept.push(b);
                    }
                }
                *batches = kept;
                tracing::debug!(project = %project, omitted, "rows left out of a flush");
            }
        }
        *self.last_flush.lock() = Instant::now();
        let mut report = FlushReport::default();
        let mut added = Vec::new();
        let written: Result<()> = (|| {
            for (project, batches) in &sealed {
                for f in partition::write_partitions(&self.config.data_dir, project, batches)? {
                    report.rows += f.rows;
                    added.push(f);
                }
            }
            Ok(())
        })();
        if let Err(e) = written {
            self.buffer.write().unseal();
            for f in &added {
                let _ = std::fs::remove_file(self.config.data_dir.join(&f.path));
            }
            return Err(e);
        }
        report.files = added.len();
        {
            let mut buffer = self.buffer.write();
            if let Err(e) = self.catalog.commit_files(&added, &[], sealed_segment) {
                buffer.unseal();
                return Err(e.into());
            }
            buffer.drop_sealed();
        }
        if let Some(seg) = sealed_segment {
            self.seal_rollups(seg);
            self.writer()?.lock().wal.remove_segments_through(seg)?;
        }
        let mut days: Vec<(ProjectId, String)> = added
            .iter()
            .map(|f| (f.project.clone(), f.day.clone()))
            .collect();
        days.sort();
        days.dedup();
        for (project, day) in days {
            report.compacted_files += self.compact_day(&project, &day)?;
        }
        if report.rows > 0 {
            tracing::info!(
                rows = report.rows,
                files = report.files,
                compacted = report.compacted_files,
                "flushed buffer to parquet"
            );
        }
        Ok((report, omitted))
    }

    /// Merges a day's files into one when there are too many. Returns how many were merged.
    fn compact_day(&self, project: &ProjectId, day: &str) -> Result<usize> {
        let files = self.catalog.files(project, day, day)?;
        if files.len() <= self.config.compact_after_files {
            return Ok(0);
        }
        let Some(merged) = partition::compact_files(&self.config.data_dir, project, &files)? else {
            return Ok(0);
        };
        let removed: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        {
            let _consistent_with_queries = self.buffer.write();
            self.catalog.commit_files(&[merged], &removed, None)?;
        }
        Ok(removed.len())
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    fn as_of(&self, received_before: i64) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::as_of(self, received_before))
    }

    async fn write(&self, batches: Vec<ProjectBatch>) -> Result<WriteOutcome> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.write_blocking(batches))
            .await
            .map_err(|e| StoreError::Internal(format!("write task failed: {e}")))?
    }

    async fn aggregate(&self, query: &AggregateQuery) -> Result<ResultTable> {
        let mut tables = self.aggregate_many(std::slice::from_ref(query)).await?;
        tables
            .pop()
            .ok_or_else(|| StoreError::Internal("a query went unanswered".into()))
    }

    async fn aggregate_many(&self, queries: &[AggregateQuery]) -> Result<Vec<ResultTable>> {
        // Queries that differ only in measure and limit share one scan.
        let mut sets: Vec<Vec<usize>> = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            match sets.iter_mut().find(|s| queries[s[0]].same_groups(q)) {
                Some(set) => set.push(i),
                None => sets.push(vec![i]),
            }
        }
        let answers = futures::future::try_join_all(sets.iter().map(|set| async {
            let qs: Vec<AggregateQuery> = set.iter().map(|&i| queries[i].clone()).collect();
            let lookups = qs
                .iter()
                .fold(Lookups::default(), |l, q| l.union(&q.lookups()));
            let first = &qs[0];
            let mut sources = self.sources(&first.project, first.from, first.to)?;
            // Counts of whole files come from the catalog (not under `as_of`: a file may hold
            // events received after its instant).
            let counted = if self.received_before.is_none() {
                counts::take_counted_files(&qs, &mut sources)
            } else {
                Default::default()
            };
            let frame = self
                .frame_of(&first.project, sources, first.from, first.to, &lookups)
                .await?;
            let mut tables = engine::aggregate_many(frame, &qs).await?;
            counts::add_counts(&mut tables, &qs, &counted);
            Ok::<_, StoreError>(tables)
        }))
        .await?;
        let mut out: Vec<Option<ResultTable>> = vec![None; queries.len()];
        for (set, tables) in sets.iter().zip(answers) {
            for (&i, t) in set.iter().zip(tables) {
                out[i] = Some(t);
            }
        }
        out.into_iter()
            .map(|t| t.ok_or_else(|| StoreError::Internal("a query went unanswered".into())))
            .collect()
    }

    async fn step_events(&self, query: &StepQuery) -> Result<StepEvents> {
        let frame = self
            .frame(&query.project, query.from, query.to, &query.lookups())
            .await?;
        engine::step_events(frame, query).await
    }

    async fn retention(&self, query: &RetentionQuery) -> Result<RetentionCounts> {
        let frame = self
            .frame(&query.project, query.from, query.to, &query.lookups())
            .await?;
        engine::retention(frame, query).await
    }

    async fn sessions(&self, query: &SessionQuery) -> Result<ResultTable> {
        let frame = self
            .session_frame(&query.project, query.from, query.to, &query.lookups())
            .await?;
        sequences::sessions(frame, query).await
    }

    async fn paths(&self, query: &PathQuery) -> Result<ResultTable> {
        let frame = self
            .session_frame(&query.project, query.from, query.to, &query.lookups())
            .await?;
        sequences::paths(frame, query).await
    }

    async fn flush(&self) -> Result<()> {
        self.flush_now().await.map(|_| ())
    }

    async fn register_rollup(&self, id: &str, def: RollupDef) -> Result<()> {
        EmbeddedStore::register_rollup(self, id, def).await
    }

    fn drop_rollup(&self, project: &ProjectId, id: &str) -> Result<()> {
        EmbeddedStore::drop_rollup(self, project, id)
    }

    fn rollup_ids(&self, project: &ProjectId) -> Vec<String> {
        EmbeddedStore::rollup_ids(self, project)
    }

    fn rollup_status(&self, project: &ProjectId, id: &str) -> Option<RollupStatus> {
        EmbeddedStore::rollup_status(self, project, id)
    }

    fn aggregate_from_rollup(&self, query: &AggregateQuery) -> Option<ResultTable> {
        EmbeddedStore::aggregate_from_rollup(self, query)
    }
}

fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(path.display(), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StoreError::Locked(path.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(path.display(), e)),
    }
}

/// The catalog setting that records the files' layout is current (see [`upgrade_files`]).
const LAYOUT_SETTING: &str = "events_layout";
/// Layout 2: files have the `person_key` column.
const LAYOUT: &str = "2";

/// Rewrites the files written before the `person_key` column, a day at a time (as a compaction
/// of that day), so that every file a query reads has it. Done once per data dir: afterwards a
/// catalog setting says so and opening reads no footers. A crash midway leaves each day either
/// old or new; the next start finishes the rest.
fn upgrade_files(dir: &Path, catalog: &Catalog) -> Result<()> {
    if catalog.get_setting(LAYOUT_SETTING)?.as_deref() == Some(LAYOUT) {
        return Ok(());
    }
    let mut days: Vec<(ProjectId, String)> = Vec::new();
    for f in catalog.all_files()? {
        if partition::lacks_person_key(&dir.join(&f.path))? {
            days.push((f.project, f.day));
        }
    }
    days.sort();
    days.dedup();
    for (project, day) in &days {
        let files = catalog.files(project, day, day)?;
        if let Some(merged) = partition::compact_files(dir, project, &files)? {
            let removed: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
            catalog.commit_files(&[merged], &removed, None)?;
        }
    }
    if !days.is_empty() {
        // Nothing reads the old files yet: they go now.
        remove_deleted_files(dir, catalog)?;
        tracing::info!(days = days.len(), "event files rewritten with person keys");
    }
    catalog.set_setting(LAYOUT_SETTING, LAYOUT)?;
    Ok(())
}

/// Unlinks every file the catalog marked deleted, whenever it was (at start, before any reader).
fn remove_deleted_files(dir: &Path, catalog: &Catalog) -> Result<()> {
    for p in catalog.purge_deleted_files("9999-12-31T00:00:00Z")? {
        let _ = std::fs::remove_file(dir.join(p));
    }
    Ok(())
}

/// Removes what a crash can leave behind: half-written `.tmp` files, files written but never
/// recorded in the catalog, and files of compactions whose deletion was pending.
fn remove_unrecorded_files(dir: &Path, catalog: &Catalog) -> Result<()> {
    remove_deleted_files(dir, catalog)?;
    let recorded: HashSet<String> = catalog.all_file_paths()?.into_iter().collect();
    let events = dir.join(partition::EVENTS_DIR);
    if !events.exists() {
        return Ok(());
    }
    let mut stack = vec![events];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| StoreError::io(d.display(), e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(dir)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !recorded.contains(&rel) {
                tracing::warn!(path = %path.display(), "removing a file no flush recorded");
                std::fs::remove_file(&path).map_err(|e| StoreError::io(path.display(), e))?;
            }
        }
    }
    Ok(())
}

fn remember_ids(dedup: &mut DedupIndex, project: &ProjectId, batch: &RecordBatch) {
    let ids = partition::fixed_binary_values(batch, col::MESSAGE_ID);
    let Some(received) = batch
        .column_by_name(col::RECEIVED_AT)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
    else {
        return;
    };
    for (i, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            dedup.insert(project, id, received.value(i));
        }
    }
}

/// Loads the ids of events received within the window from the Parquet files written since.
fn rebuild_dedup(
    dir: &Path,
    catalog: &Catalog,
    dedup: &mut DedupIndex,
    window: Duration,
) -> Result<()> {
    let since =
        Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(7));
    let cutoff = since.timestamp_micros();
    for f in
        catalog.files_created_since(&since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))?
    {
        let columns = [col::MESSAGE_ID, col::RECEIVED_AT];
        for b in partition::read_columns(&dir.join(&f.path), Some(&columns))? {
            remember_ids(dedup, &f.project, &b);
        }
    }
    dedup.expire(cutoff.max(now_us() - window.as_micros() as i64));
    Ok(())
}
