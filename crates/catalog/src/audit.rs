//! The audit log: what was done to personal data (erasures), by whom and when, and how much;
//! never the data itself, not even the erased person's id. Entries outlive their project.

use rusqlite::params;
use serde::Serialize;
use serde_json::Value;
use tally_core::ProjectId;

use crate::{Catalog, Result, now_rfc3339};

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub project: String,
    pub at: String,
    /// Who: `key ta_1234` (the prefix of the admin key, as `/v1/keys` lists it) or
    /// `cli USER@HOST`.
    pub actor: String,
    /// What, e.g. `erase_person`.
    pub action: String,
    /// How much (counts), as JSON.
    pub detail: Value,
}

impl Catalog {
    /// Appends an entry to the audit log; returns its id.
    pub fn record_audit(
        &self,
        project: &ProjectId,
        actor: &str,
        action: &str,
        detail: &Value,
    ) -> Result<i64> {
        self.with(|c| insert(c, project, actor, action, detail))
    }

    /// The project's audit log, newest first, at most `limit` entries.
    pub fn audit_log(&self, project: &ProjectId, limit: usize) -> Result<Vec<AuditEntry>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, project_id, at, actor, action, detail FROM audit_log
                 WHERE project_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![project.as_str(), limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, project, at, actor, action, detail) = row?;
                out.push(AuditEntry {
                    id,
                    project,
                    at,
                    actor,
                    action,
                    detail: serde_json::from_str(&detail)?,
                });
            }
            Ok(out)
        })
    }
}

/// Appends an entry (inside the caller's transaction, where there is one).
pub(crate) fn insert(
    c: &rusqlite::Connection,
    project: &ProjectId,
    actor: &str,
    action: &str,
    detail: &Value,
) -> Result<i64> {
    c.execute(
        "INSERT INTO audit_log(project_id, at, actor, action, detail)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            project.as_str(),
            now_rfc3339(),
            actor,
            action,
            detail.to_string()
        ],
    )?;
    Ok(c.last_insert_rowid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_come_back_newest_first_and_per_project() {
        let c = Catalog::open_in_memory().unwrap();
        let a = c.create_project("a").unwrap().id;
        let b = c.create_project("b").unwrap().id;
        c.record_audit(
            &a,
            "cli me@here",
            "erase_person",
            &json!({"events_removed": 3}),
        )
        .unwrap();
        c.record_audit(
            &b,
            "key ta_1234",
            "erase_person",
            &json!({"events_removed": 1}),
        )
        .unwrap();
        c.record_audit(
            &a,
            "key ta_5678",
            "erase_person",
            &json!({"events_removed": 0}),
        )
        .unwrap();
        let log = c.audit_log(&a, 10).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].actor, "key ta_5678");
        assert_eq!(log[1].detail, json!({"events_removed": 3}));
        assert_eq!(c.audit_log(&a, 1).unwrap().len(), 1);
    }
}
