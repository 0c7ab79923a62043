//! The metadata store: projects, API keys, event schemas, saved rules, persons and groups, reports
//! with their runs and deliveries, dashboards with their share links, and the
//! manifest of Parquet files (with the WAL position they cover), in one embedded SQLite database (`meta.sqlite` in the data dir).
//!
//! SQLite runs in WAL journal mode with a busy timeout, so the CLI (`tally project create`) and a
//! running server can use the same file at once. This crate never holds event data and never
//! decides what a query means; it only remembers.

mod audit;
mod dashboards;
mod files;
mod keys;
mod migrations;
mod persons;
mod projects;
mod reports;
mod rules;
mod users;

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::Connection;

pub use audit::AuditEntry;
pub use dashboards::{CreatedShare, DashboardRow, ShareRow};
pub use files::{ParquetFileEntry, WAL_PERSISTED_KEY};
pub use keys::{ApiKey, KeyGrant, KeyScope};
pub use persons::{ErasureRecord, Group, MergeOutcome, Person, PersonOverrides};
pub use projects::{CreatedProject, Project, RetentionPolicy};
pub use reports::{ClaimedRun, DeliveryRow, ReportRow, RunRow};
pub use rules::SavedRule;
pub use users::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, Member, Membership, Role, User};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Invalid(String),
    #[error("{what} `{name}` not found")]
    NotFound { what: &'static str, name: String },
    #[error("{what} `{name}` already exists")]
    Conflict { what: &'static str, name: String },
    #[error("metadata database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("metadata database: stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// The metadata database. Cheap to share behind an `Arc`; calls are short and serialized.
#[derive(Debug)]
pub struct Catalog {
    conn: Mutex<Connection>,
}

impl Catalog {
    /// Opens (creating and migrating if needed) `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted rows are overwritten, not left in free pages: an erased person's properties
        // must not survive in the file.
        conn.pragma_update(None, "secure_delete", "ON")?;
        migrations::migrate(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// An in-memory catalog, for tests.
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        migrations::migrate(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock();
        f(&mut conn)
    }

    /// A value of the small key-value table the other stages keep their own state in.
    pub fn get_setting(&self, key: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        self.with(|c| {
            Ok(
                c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?,
            )
        })
    }

    /// Today's random salt for `name` (created on first use), as hex. Salts of days before
    /// `yesterday` are deleted, so what they salted can never be recomputed.
    pub fn daily_salt(&self, name: &str, today: &str, yesterday: &str) -> Result<String> {
        use rusqlite::OptionalExtension;
        let key = format!("{name}:{today}");
        self.with(|c| {
            let tx = c.transaction()?;
            let existing: Option<String> = tx
                .query_row("SELECT value FROM settings WHERE key = ?1", [&key], |r| {
                    r.get(0)
                })
                .optional()?;
            let salt = match existing {
                Some(s) => s,
                None => {
                    let s = hex::encode(rand::random::<[u8; 32]>());
                    tx.execute(
                        "INSERT INTO settings(key, value) VALUES (?1, ?2)",
                        [&key, &s],
                    )?;
                    s
                }
            };
            tx.execute(
                "DELETE FROM settings WHERE key > ?1 AND key < ?2",
                [format!("{name}:"), format!("{name}:{yesterday}")],
            )?;
            tx.commit()?;
            Ok(salt)
        })
    }

    /// The secret that keys PII hashes (created on first use, kept for good so that equal
    /// values hash equal across restarts and imports), as bytes.
    pub fn pii_salt(&self) -> Result<Vec<u8>> {
        const KEY: &str = "pii_salt";
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        let salt = self.with(|c| {
            c.execute(
                "INSERT INTO settings(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                [KEY, &fresh],
            )?;
            Ok(
                c.query_row("SELECT value FROM settings WHERE key = ?1", [KEY], |r| {
                    r.get::<_, String>(0)
                })?,
            )
        })?;
        Ok(salt.into_bytes())
    }

    /// Copies the write-ahead log into the database file and truncates it, so that the old
    /// versions of changed pages (an erased person's rows) leave the `-wal` file too. Best
    /// effort: a reader of another process may keep some frames until its next checkpoint.
    pub fn checkpoint(&self) -> Result<()> {
        self.with(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO settings(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )?;
            Ok(())
        })
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
