//! The manifest of Parquet files: which files hold a project's events, and how far the WAL is
//! covered by them. Both change in one transaction, which is what makes a flush exactly-once.

use rusqlite::{OptionalExtension, params};
use tally_core::ProjectId;

use crate::{Catalog, CatalogError, Result, now_rfc3339};

/// The settings key under which the last WAL segment fully persisted to Parquet is kept.
pub const WAL_PERSISTED_KEY: &str = "wal.persisted_through_segment";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetFileEntry {
    /// Relative to the data directory.
    pub path: String,
    pub project: ProjectId,
    /// `YYYY-MM-DD` (UTC) of every event in the file.
    pub day: String,
    pub rows: u64,
    pub bytes: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

impl Catalog {
    /// Records a flush or a compaction in one transaction: `added` files become visible, `removed`
    /// ones are marked deleted (their files are unlinked later, by [`Catalog::purge_deleted_files`]),
    /// and the WAL watermark moves to `wal_through` if given.
    pub fn commit_files(
        &self,
        added: &[ParquetFileEntry],
        removed: &[String],
        wal_through: Option<u64>,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            let now = now_rfc3339();
            for f in added {
                tx.execute(
                    "INSERT INTO parquet_files(path, project_id, day, rows, bytes, min_ts, max_ts, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        f.path,
                        f.project.as_str(),
                        f.day,
                        f.rows as i64,
                        f.bytes as i64,
                        f.min_ts,
                        f.max_ts,
                        now
                    ],
                )?;
            }
            for p in removed {
                // A file replaced twice (two rewrites racing) would duplicate its rows: refuse.
                let n = tx.execute(
                    "UPDATE parquet_files SET deleted_at = ?2 WHERE path = ?1 AND deleted_at IS NULL",
                    params![p, now],
                )?;
                if n != 1 {
                    return Err(CatalogError::Conflict {
                        what: "replaced file",
                        name: format!("{p} (no longer live)"),
                    });
                }
            }
            if let Some(seg) = wal_through {
                tx.execute(
                    "INSERT INTO settings(key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![WAL_PERSISTED_KEY, seg.to_string()],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Live files of a project whose day lies in `[from_day, to_day]` (inclusive, `YYYY-MM-DD`).
    pub fn files(
        &self,
        project: &ProjectId,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<ParquetFileEntry>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT path, day, rows, bytes, min_ts, max_ts FROM parquet_files
                 WHERE project_id = ?1 AND deleted_at IS NULL AND day >= ?2 AND day <= ?3
                 ORDER BY day, path",
            )?;
            let rows = st.query_map(params![project.as_str(), from_day, to_day], |r| {
                Ok(ParquetFileEntry {
                    path: r.get(0)?,
                    project: project.clone(),
                    day: r.get(1)?,
                    rows: r.get::<_, i64>(2)? as u64,
                    bytes: r.get::<_, i64>(3)? as u64,
                    min_ts: r.get(4)?,
                    max_ts: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Every live file of every project.
    pub fn all_files(&self) -> Result<Vec<ParquetFileEntry>> {
        self.files_where("deleted_at IS NULL", "")
    }

    /// Live files recorded at or after `since` (RFC 3339).
    pub fn files_created_since(&self, since: &str) -> Result<Vec<ParquetFileEntry>> {
        self.files_where("deleted_at IS NULL AND created_at >= ?1", since)
    }

    fn files_where(&self, condition: &str, arg: &str) -> Result<Vec<ParquetFileEntry>> {
        self.with(|c| {
            let sql = format!(
                "SELECT path, project_id, day, rows, bytes, min_ts, max_ts FROM parquet_files
                 WHERE {condition} ORDER BY project_id, day, path"
            );
            let mut st = c.prepare(&sql)?;
            let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Option<ParquetFileEntry>> {
                let project: String = r.get(1)?;
                let Some(project) = ProjectId::parse(&project) else {
                    return Ok(None);
                };
                Ok(Some(ParquetFileEntry {
                    path: r.get(0)?,
                    project,
                    day: r.get(2)?,
                    rows: r.get::<_, i64>(3)? as u64,
                    bytes: r.get::<_, i64>(4)? as u64,
                    min_ts: r.get(5)?,
                    max_ts: r.get(6)?,
                }))
            };
            let params: &[&dyn rusqlite::ToSql] = if condition.contains("?1") {
                &[&arg]
            } else {
                &[]
            };
            let rows = st.query_map(params, map)?;
            Ok(rows
                .filter_map(|r| r.transpose())
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Every live file path (for start-up clean-up of files a crash left unrecorded).
    pub fn all_file_paths(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT path FROM parquet_files WHERE deleted_at IS NULL")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Forgets files marked deleted before `before` (RFC 3339) and returns their paths, for the
    /// caller to unlink. Deletion is deferred so that queries already reading them can finish.
    pub fn purge_deleted_files(&self, before: &str) -> Result<Vec<String>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let paths = {
                let mut st = tx.prepare(
                    "SELECT path FROM parquet_files WHERE deleted_at IS NOT NULL AND deleted_at < ?1",
                )?;
                let rows = st.query_map([before], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()?
            };
            tx.execute(
                "DELETE FROM parquet_files WHERE deleted_at IS NOT NULL AND deleted_at < ?1",
                [before],
            )?;
            tx.commit()?;
            Ok(paths)
        })
    }

    pub fn wal_persisted_through(&self) -> Result<Option<u64>> {
        self.with(|c| {
            let v: Option<String> = c
                .query_row(
                    "SELECT value FROM settings WHERE key = ?1",
                    [WAL_PERSISTED_KEY],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(v.and_then(|s| s.parse().ok()))
        })
    }
}
