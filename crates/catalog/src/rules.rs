//! Saved aggregation rules. The catalog stores each as the JSON the API took; the query layer
//! validates it and decides what it means.

use rusqlite::params;
use tally_core::ProjectId;

use crate::{Catalog, Result, now_rfc3339};

/// A saved rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRule {
    pub project: ProjectId,
    pub name: String,
    pub rule_json: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Catalog {
    /// Saves (or replaces) a rule. Returns true when it replaced one.
    pub fn put_rule(&self, project: &ProjectId, name: &str, rule_json: &str) -> Result<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            let existed: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM rules WHERE project_id = ?1 AND name = ?2)",
                params![project.as_str(), name],
                |r| r.get(0),
            )?;
            let now = now_rfc3339();
            tx.execute(
                "INSERT INTO rules(project_id, name, rule_json, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT(project_id, name)
                 DO UPDATE SET rule_json = excluded.rule_json, updated_at = excluded.updated_at",
                params![project.as_str(), name, rule_json, now],
            )?;
            tx.commit()?;
            Ok(existed)
        })
    }

    /// Deletes a rule. Returns false when there was none.
    pub fn delete_rule(&self, project: &ProjectId, name: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM rules WHERE project_id = ?1 AND name = ?2",
                params![project.as_str(), name],
            )? > 0)
        })
    }

    /// The project's rules by name, or every project's when `project` is `None`.
    pub fn rules(&self, project: Option<&ProjectId>) -> Result<Vec<SavedRule>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT project_id, name, rule_json, created_at, updated_at FROM rules
                 WHERE ?1 IS NULL OR project_id = ?1 ORDER BY project_id, name",
            )?;
            let rows = stmt.query_map([project.map(ProjectId::as_str)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (p, name, rule_json, created_at, updated_at) = row?;
                let Some(project) = ProjectId::parse(&p) else {
                    continue;
                };
                out.push(SavedRule {
                    project,
                    name,
                    rule_json,
                    created_at,
                    updated_at,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_replace_delete() {
        let c = Catalog::open_in_memory().unwrap();
        let p = c.create_project("shop").unwrap().id;
        assert!(!c.put_rule(&p, "pv", r#"{"name":"pv"}"#).unwrap());
        assert!(
            c.put_rule(&p, "pv", r#"{"name":"pv","event":"x"}"#)
                .unwrap()
        );
        let rules = c.rules(Some(&p)).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].rule_json, r#"{"name":"pv","event":"x"}"#);
        assert_eq!(c.rules(None).unwrap().len(), 1);
        assert!(c.delete_rule(&p, "pv").unwrap());
        assert!(!c.delete_rule(&p, "pv").unwrap());
        assert!(c.rules(Some(&p)).unwrap().is_empty());
    }
}
