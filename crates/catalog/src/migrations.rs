//! Schema versions of the metadata database, applied in order at open.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: the data spine.
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        strict_schemas INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
     );
     CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        scope TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
     );
     CREATE TABLE event_schemas (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        event TEXT NOT NULL,
        schema_json TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project_id, event)
     );
     CREATE TABLE parquet_files (
        path TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        day TEXT NOT NULL,
        rows INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        min_ts INTEGER NOT NULL,
        max_ts INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        deleted_at TEXT
     );
     CREATE INDEX parquet_files_by_day ON parquet_files(project_id, day) WHERE deleted_at IS NULL;",
    // 2: saved aggregation rules (kept live as rollups).
    "CREATE TABLE rules (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        rule_json TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project_id, name)
     );",
    // 3: persons, the ids merged into them, groups (see persons.rs).
    "CREATE TABLE persons (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        person_id TEXT NOT NULL,
        properties TEXT NOT NULL,
        identified INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project_id, person_id)
     );
     CREATE TABLE person_distinct_ids (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        distinct_id TEXT NOT NULL,
        person_id TEXT NOT NULL,
        PRIMARY KEY (project_id, distinct_id)
     );
     CREATE INDEX person_distinct_ids_by_person ON person_distinct_ids(project_id, person_id);
     CREATE TABLE identity_versions (
        project_id TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
        version INTEGER NOT NULL DEFAULT 0,
        properties_version INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE groups (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        group_type TEXT NOT NULL,
        group_key TEXT NOT NULL,
        properties TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project_id, group_type, group_key)
     );",
    // 4: report definitions, their scheduled runs (one per report and slot) and deliveries.
    "CREATE TABLE reports (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        definition TEXT NOT NULL,
        next_run_at INTEGER,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
     );
     CREATE INDEX reports_by_project ON reports(project_id);
     CREATE INDEX reports_due ON reports(next_run_at) WHERE next_run_at IS NOT NULL;
     CREATE TABLE report_runs (
        id TEXT PRIMARY KEY,
        report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        slot INTEGER,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL,
        at INTEGER NOT NULL,
        watermark INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        output TEXT,
        error TEXT,
        UNIQUE (report_id, slot)
     );
     CREATE INDEX report_runs_open ON report_runs(status) WHERE status IN ('pending', 'delivering');
     CREATE TABLE report_deliveries (
        run_id TEXT NOT NULL REFERENCES report_runs(id) ON DELETE CASCADE,
        channel INTEGER NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        delivered_at INTEGER,
        PRIMARY KEY (run_id, channel)
     );",
    // 5: dashboards and their read-only share links (only a hash of each token is kept).
    "CREATE TABLE dashboards (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        definition TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
     );
     CREATE INDEX dashboards_by_project ON dashboards(project_id);
     CREATE TABLE dashboard_shares (
        id TEXT PRIMARY KEY,
        dashboard_id TEXT NOT NULL REFERENCES dashboards(id) ON DELETE CASCADE,
        token_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
     );
     CREATE INDEX dashboard_shares_by_dashboard ON dashboard_shares(dashboard_id);",
    "ALTER TABLE projects ADD COLUMN consent TEXT NOT NULL DEFAULT 'anonymous';",
    "CREATE TABLE retention_policies (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        event TEXT NOT NULL DEFAULT '',
        max_age TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project_id, event)
     );",
    // 8: what was done to personal data (erasures): who, when, how much; never the data.
    "CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE INDEX audit_log_by_project ON audit_log(project_id, id);",
    // 9: users (Argon2id password hashes), their roles per project, their web UI sessions
    // (only a hash of each token is kept).
    "CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL
     );
     CREATE TABLE memberships (
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, project_id)
     );
     CREATE INDEX memberships_by_project ON memberships(project_id);
     CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        expires_at INTEGER NOT NULL
     );
     CREATE INDEX sessions_by_user ON sessions(user_id);",
    // 10: a key's own request rate (requests per second; NULL: the server's default, 0: none).
    "ALTER TABLE api_keys ADD COLUMN rate_limit INTEGER;",
];

pub(crate) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let target = i as i64 + 1;
        if version < target {
            conn.execute_batch(&format!(
                "BEGIN; {sql}; PRAGMA user_version = {target}; COMMIT;"
            ))?;
        }
    }
    Ok(())
}
