//! Rollups: per-hour partial aggregates of registered rules, kept up to date on every write.
//!
//! A rollup holds one [`Cell`] per UTC hour and group: the event count, the sum, count, min and
//! max of the measure's field, and, for distinct persons, a HyperLogLog++ sketch. Cells merge, so
//! any range of whole hours, bucketed by any interval whose boundaries fall on whole UTC hours
//! (every hour, day, week or month of a time zone with a whole-hour offset), is answered by
//! merging cells, whatever the number of events.
//!
//! Consistency with the WAL: each write's cells go into `live`, keyed by the WAL segment the write
//! went to. When a flush commits the segments through `S` to Parquet, the live cells of those
//! segments move into `sealed`, and `sealed` is written to disk with `S` as its watermark. At
//! start, a snapshot whose watermark equals the catalog's is loaded and the buffer (exactly the
//! segments after it) is aggregated into `live`; any other snapshot is discarded and the rollup is
//! rebuilt from all the project's events.
//!
//! Sealed cells are also kept per UTC day (derived, never written to disk): a query reads the day
//! cells for the whole UTC days inside each of its buckets and hour cells only for the rest, so a
//! daily series over a quarter merges about 90 cells per group instead of 2,160.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use cardinality_estimator::CardinalityEstimator;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::engine::{PartialRow, order_and_limit, result_columns};
use crate::plan::{AggregateQuery, Measure, ResultTable, RollupDef, RollupStatus};
use crate::{Result, StoreError};

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// Distinct persons: HyperLogLog++ with 2^12 registers (about 1.6 % standard error), exact
/// (up to 32-bit hash collisions) below 128 persons, where it keeps the hashes themselves.
pub(crate) type Sketch = CardinalityEstimator<str>;

/// The partial aggregate of the events of one hour and group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Cell {
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) n: u64,
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
    pub(crate) persons: Option<Sketch>,
}

impl Cell {
    fn merge(&mut self, o: &Cell) {
        self.count += o.count;
        self.sum += o.sum;
        self.n += o.n;
        self.min = opt(self.min, o.min, f64::min);
        self.max = opt(self.max, o.max, f64::max);
        match (&mut self.persons, &o.persons) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.persons = Some(b.clone()),
            _ => {}
        }
    }

    fn add(&mut self, r: &PartialRow) {
        self.count += r.count;
        self.sum += r.sum;
        self.n += r.n;
        self.min = opt(self.min, r.min, f64::min);
        self.max = opt(self.max, r.max, f64::max);
        if let Some(p) = &r.person {
            self.persons.get_or_insert_with(Sketch::new).insert(p);
        }
    }

    /// The measure's value, as the raw query would give it.
    fn value(&self, m: &Measure) -> Value {
        let num = |x: Option<f64>| {
            x.and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number)
        };
        match m {
            Measure::Count => Value::from(self.count),
            Measure::UniquePersons => {
                Value::from(self.persons.as_ref().map_or(0, Sketch::estimate) as u64)
            }
            Measure::Sum(_) => num((self.n > 0).then_some(self.sum)),
            Measure::Avg(_) => num((self.n > 0).then(|| self.sum / self.n as f64)),
            Measure::Min(_) => num(self.min),
            Measure::Max(_) => num(self.max),
            Measure::Percentile(..) => Value::Null,
        }
    }
}

fn opt(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A cell's key: the hour (UTC, µs) and the group values.
pub(crate) type CellKey = (i64, Vec<Option<String>>);

/// Cells by hour, then group values.
pub(crate) type Cells = BTreeMap<CellKey, Cell>;

pub(crate) fn cells_from(rows: &[PartialRow]) -> Cells {
    let mut cells = Cells::new();
    add_rows(&mut cells, rows);
    cells
}

fn add_rows(cells: &mut Cells, rows: &[PartialRow]) {
    for r in rows {
        cells.entry((r.hour, r.groups.clone())).or_default().add(r);
    }
}

/// Merges hour cells into the cells of their UTC days.
fn merge_into_days(days: &mut Cells, hours: &Cells) {
    for ((hour, groups), c) in hours {
        let day = hour - hour.rem_euclid(DAY_US);
        days.entry((day, groups.clone())).or_default().merge(c);
    }
}

fn merge_cells(into: &mut Cells, from: &Cells) {
    for (k, c) in from {
        match into.get_mut(k) {
            Some(x) => x.merge(c),
            None => {
                into.insert(k.clone(), c.clone());
            }
        }
    }
}

/// The state of one rollup.
#[derive(Debug)]
pub(crate) enum State {
    /// Being built from storage; queries use the raw events meanwhile.
    Building,
    Ready {
        sealed: Cells,
        /// `sealed` merged per UTC day (keys are the day's first hour).
        sealed_days: Cells,
        /// The WAL segment through which `sealed` holds every event.
        watermark: u64,
        /// Cells of writes not yet in Parquet, by WAL segment.
        live: BTreeMap<u64, Cells>,
    },
    Failed(String),
}

#[derive(Debug)]
pub(crate) struct Rollup {
    pub(crate) id: String,
    pub(crate) def: RollupDef,
    pub(crate) state: State,
}

impl Rollup {
    pub(crate) fn status(&self) -> RollupStatus {
        let (state, cells, error) = match &self.state {
            State::Building => ("building", 0, None),
            State::Ready { sealed, live, .. } => (
                "ready",
                sealed.len() + live.values().map(BTreeMap::len).sum::<usize>(),
                None,
            ),
            State::Failed(e) => ("failed", 0, Some(e.clone())),
        };
        RollupStatus {
            state: state.into(),
            cells,
            error,
        }
    }

    /// Adds a write's partial rows, in WAL `segment`.
    pub(crate) fn apply(&mut self, segment: u64, rows: &[PartialRow]) {
        if let State::Ready { live, .. } = &mut self.state {
            add_rows(live.entry(segment).or_default(), rows);
        }
    }

    /// Moves the live cells of segments through `through` into `sealed`. Returns the snapshot to
    /// persist.
    pub(crate) fn seal(&mut self, through: u64) -> Option<Snapshot> {
        let State::Ready {
            sealed,
            sealed_days,
            watermark,
            live,
        } = &mut self.state
        else {
            return None;
        };
        let keep = live.split_off(&(through + 1));
        for cells in std::mem::replace(live, keep).values() {
            merge_cells(sealed, cells);
            merge_into_days(sealed_days, cells);
        }
        *watermark = through;
        Some(Snapshot::new(&self.def, through, sealed))
    }

    /// Answers `q` from the cells, or `None` when its buckets do not fall on whole UTC hours.
    pub(crate) fn answer(&self, q: &AggregateQuery) -> Option<ResultTable> {
        let State::Ready {
            sealed,
            sealed_days,
            live,
            ..
        } = &self.state
        else {
            return None;
        };
        if q.from % HOUR_US != 0 || q.to % HOUR_US != 0 || q.from >= q.to {
            return None;
        }
        let from = DateTime::<Utc>::from_timestamp_micros(q.from)?;
        let to = DateTime::<Utc>::from_timestamp_micros(q.to)?;
        // Bucket starts inside the range, each on a whole UTC hour.
        let starts: Vec<i64> = match q.bucket {
            None => vec![q.from],
            Some(iv) => {
                let range = tally_core::TimeRange {
                    from,
                    to,
                    timezone: q.timezone,
                };
                let b: Vec<i64> = iv
                    .buckets(&range)
                    .iter()
                    .map(DateTime::timestamp_micros)
                    .collect();
                if b.iter().any(|s| *s > q.from && s % HOUR_US != 0) {
                    return None;
                }
                b
            }
        };
        let has_bucket = q.bucket.is_some();
        // Each bucket's span: whole UTC days from the day cells, the rest from the hour cells,
        // plus the live cells; as (bucket, cells, from, to).
        let mut spans: Vec<(usize, &Cells, i64, i64)> = Vec::new();
        let mut ends: Vec<i64> = starts.iter().skip(1).copied().collect();
        ends.push(q.to);
        for (b, (&start, &end)) in starts.iter().zip(&ends).enumerate() {
            let (start, end) = (start.max(q.from), end.min(q.to));
            let first_day = start + (DAY_US - start.rem_euclid(DAY_US)) % DAY_US;
            let last_day = end - end.rem_euclid(DAY_US);
            if first_day < last_day {
                spans.push((b, sealed, start, first_day));
                spans.push((b, sealed_days, first_day, last_day));
                spans.push((b, sealed, last_day, end));
            } else {
                spans.push((b, sealed, start, end));
            }
            spans.extend(live.values().map(|cells| (b, cells, start, end)));
        }
        // Keys borrow the cells' group values: no allocation per cell.
        let mut merged: BTreeMap<(usize, &[Option<String>]), Cell> = BTreeMap::new();
        for (b, cells, from, to) in spans {
            if from >= to {
                continue;
            }
            for ((_, groups), cell) in cells.range((from, Vec::new())..(to, Vec::new())) {
                merged
                    .entry((b, groups.as_slice()))
                    .or_default()
                    .merge(cell);
            }
        }
        let mut rows: Vec<Vec<Value>> = merged
            .into_iter()
            .map(|((b, groups), cell)| {
                let mut row = Vec::with_capacity(groups.len() + 2);
                if has_bucket {
                    let t = DateTime::<Utc>::from_timestamp_micros(starts[b]).unwrap_or(from);
                    row.push(Value::String(tally_core::time::format_rfc3339(t)));
                }
                row.extend(
                    groups
                        .iter()
                        .map(|g| g.clone().map_or(Value::Null, Value::String)),
                );
                row.push(cell.value(&q.measure));
                row
            })
            .collect();
        if rows.is_empty() && !has_bucket && q.group_by.is_empty() {
            // An aggregate without groups over no events still has its one row.
            rows.push(vec![Cell::default().value(&q.measure)]);
        }
        let n_groups = q.group_by.len() + usize::from(has_bucket);
        order_and_limit(&mut rows, has_bucket, n_groups, q.limit);
        Some(ResultTable {
            columns: result_columns(q),
            rows,
        })
    }
}

/// A key that changes whenever the definition does (the project is part of the file's path).
pub(crate) fn def_key(def: &RollupDef) -> String {
    format!("{:?}|{:?}|{:?}", def.filters, def.group_by, def.measure)
}

/// A rollup's sealed cells as written to disk.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub(crate) key: String,
    pub(crate) watermark: u64,
    pub(crate) cells: Vec<(CellKey, Cell)>,
}

impl Snapshot {
    pub(crate) fn new(def: &RollupDef, watermark: u64, sealed: &Cells) -> Self {
        Self {
            key: def_key(def),
            watermark,
            cells: sealed.iter().map(|(k, c)| (k.clone(), c.clone())).collect(),
        }
    }
}

pub(crate) fn snapshot_path(dir: &Path, project: &str, id: &str) -> PathBuf {
    let safe: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    dir.join("rollups")
        .join(project)
        .join(format!("{safe}-{:016x}.cbor", fnv(id)))
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Writes a snapshot atomically (temporary file, fsync, rename).
pub(crate) fn write_snapshot(path: &Path, s: &Snapshot) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir.display(), e))?;
    let tmp = path.with_extension("cbor.tmp");
    let mut bytes = Vec::new();
    ciborium::into_writer(s, &mut bytes)
        .map_err(|e| StoreError::Internal(format!("encoding a rollup: {e}")))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| StoreError::io(tmp.display(), e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path.display(), e))?;
    super::partition::sync_dir(dir)
}

/// Reads a snapshot; `None` when there is none or it cannot be read (it is then rebuilt).
pub(crate) fn read_snapshot(path: &Path) -> Option<Snapshot> {
    let bytes = std::fs::read(path).ok()?;
    match ciborium::from_reader(bytes.as_slice()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable rollup snapshot: rebuilding");
            None
        }
    }
}

/// A rollup made ready from a snapshot (or nothing) plus the cells of the buffered events.
pub(crate) fn ready(sealed: Cells, watermark: u64, live_segment: u64, live: Cells) -> State {
    let mut by_segment = BTreeMap::new();
    if !live.is_empty() {
        by_segment.insert(live_segment, live);
    }
    let mut sealed_days = Cells::new();
    merge_into_days(&mut sealed_days, &sealed);
    State::Ready {
        sealed,
        sealed_days,
        watermark,
        live: by_segment,
    }
}
