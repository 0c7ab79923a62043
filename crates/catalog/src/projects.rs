//! Projects and their event schemas.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use tally_core::{ConsentMode, EventSchema, ProjectId};

use crate::{Catalog, CatalogError, KeyScope, Result, now_rfc3339};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    /// When true, events without a registered schema are rejected.
    pub strict_schemas: bool,
    /// What happens to events sent without consent.
    pub consent: ConsentMode,
    pub created_at: String,
}

/// A new project with its first keys; the only moment the keys are seen in clear.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedProject {
    pub id: ProjectId,
    pub name: String,
    pub write_key: String,
    pub read_key: String,
    /// Manages the project and its persons (erasure, export); can also query.
    pub admin_key: String,
}

/// How long a project keeps its events (all of them, or those of one event name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionPolicy {
    pub event: Option<String>,
    pub max_age: String,
}

const MAX_NAME_LEN: usize = 100;

impl Catalog {
    pub fn create_project(&self, name: &str) -> Result<CreatedProject> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_LEN
            || name.chars().any(char::is_control)
        {
            return Err(CatalogError::Invalid(format!(
                "a project name must be 1 to {MAX_NAME_LEN} printable characters"
            )));
        }
        let id = ProjectId::generate();
        let write = crate::keys::new_key(KeyScope::Write);
        let read = crate::keys::new_key(KeyScope::Read);
        let admin = crate::keys::new_key(KeyScope::Admin);
        self.with(|c| {
            let tx = c.transaction()?;
            let inserted = tx.execute(
                "INSERT INTO projects(id, name, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO NOTHING",
                params![id.as_str(), name, now_rfc3339()],
            )?;
            if inserted == 0 {
                return Err(CatalogError::Conflict {
                    what: "project",
                    name: name.to_owned(),
                });
            }
            crate::keys::insert_key(&tx, &id, KeyScope::Write, &write)?;
            crate::keys::insert_key(&tx, &id, KeyScope::Read, &read)?;
            crate::keys::insert_key(&tx, &id, KeyScope::Admin, &admin)?;
            tx.commit()?;
            Ok(())
        })?;
        Ok(CreatedProject {
            id,
            name: name.to_owned(),
            write_key: write,
            read_key: read,
            admin_key: admin,
        })
    }

    pub fn list_projects(&self) -> Result<Vec<Project>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, name, strict_schemas, created_at, consent FROM projects ORDER BY created_at, id",
            )?;
            let rows = st.query_map([], row_to_project)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// A project by id or by name.
    pub fn find_project(&self, id_or_name: &str) -> Result<Project> {
        self.with(|c| {
            c.query_row(
                "SELECT id, name, strict_schemas, created_at, consent FROM projects WHERE id = ?1 OR name = ?1",
                [id_or_name],
                row_to_project,
            )
            .optional()?
            .ok_or_else(|| CatalogError::NotFound {
                what: "project",
                name: id_or_name.to_owned(),
            })
        })
    }

    pub fn set_strict_schemas(&self, project: &ProjectId, strict: bool) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE projects SET strict_schemas = ?2 WHERE id = ?1",
                params![project.as_str(), strict],
            )?;
            Ok(())
        })
    }

    /// Sets how long `project` keeps its events (of `event` only, when given): a
    /// [`tally_core::time::MaxAge`] as written (`90d`, `13 months`).
    pub fn set_retention(
        &self,
        project: &ProjectId,
        event: Option<&str>,
        max_age: &str,
    ) -> Result<()> {
        max_age
            .parse::<tally_core::time::MaxAge>()
            .map_err(CatalogError::Invalid)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO retention_policies(project_id, event, max_age, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(project_id, event) DO UPDATE SET max_age = excluded.max_age,
                                                              updated_at = excluded.updated_at",
                params![
                    project.as_str(),
                    event.unwrap_or(""),
                    max_age.trim(),
                    now_rfc3339()
                ],
            )?;
            Ok(())
        })
    }

    /// Removes a retention policy; false when there was none.
    pub fn clear_retention(&self, project: &ProjectId, event: Option<&str>) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM retention_policies WHERE project_id = ?1 AND event = ?2",
                params![project.as_str(), event.unwrap_or("")],
            )? == 1)
        })
    }

    /// The project's retention policies: (event or `None` for all events, max age as written).
    pub fn retention_policies(&self, project: &ProjectId) -> Result<Vec<RetentionPolicy>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT event, max_age FROM retention_policies WHERE project_id = ?1 ORDER BY event",
            )?;
            let rows = st.query_map([project.as_str()], |r| {
                let event: String = r.get(0)?;
                Ok(RetentionPolicy {
                    event: (!event.is_empty()).then_some(event),
                    max_age: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub fn set_consent(&self, project: &ProjectId, mode: ConsentMode) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE projects SET consent = ?2 WHERE id = ?1",
                params![project.as_str(), mode.as_str()],
            )?;
            Ok(())
        })
    }

    pub fn put_schema(&self, project: &ProjectId, schema: &EventSchema) -> Result<()> {
        let json = serde_json::to_string(schema)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO event_schemas(project_id, event, schema_json, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(project_id, event) DO UPDATE
                   SET schema_json = excluded.schema_json, updated_at = excluded.updated_at",
                params![project.as_str(), schema.event, json, now_rfc3339()],
            )?;
            Ok(())
        })
    }

    pub fn delete_schema(&self, project: &ProjectId, event: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM event_schemas WHERE project_id = ?1 AND event = ?2",
                params![project.as_str(), event],
            )? > 0)
        })
    }

    pub fn schemas(&self, project: &ProjectId) -> Result<Vec<EventSchema>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT schema_json FROM event_schemas WHERE project_id = ?1 ORDER BY event",
            )?;
            let rows = st.query_map([project.as_str()], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for json in rows {
                out.push(serde_json::from_str(&json?)?);
            }
            Ok(out)
        })
    }
}

fn row_to_project(r: &rusqlite::Row<'_>) -> rusqlite::Result<Project> {
    let id: String = r.get(0)?;
    Ok(Project {
        id: ProjectId::parse(&id).ok_or_else(|| {
            rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Text)
        })?,
        name: r.get(1)?,
        strict_schemas: r.get(2)?,
        created_at: r.get(3)?,
        consent: r.get::<_, String>(4)?.parse().map_err(|_| {
            rusqlite::Error::InvalidColumnType(4, "consent".into(), rusqlite::types::Type::Text)
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_keys_authenticate() {
        let cat = Catalog::open_in_memory().unwrap();
        let p = cat.create_project("shop").unwrap();
        assert!(matches!(
            cat.create_project("shop"),
            Err(CatalogError::Conflict { .. })
        ));
        assert_eq!(cat.find_project("shop").unwrap().id, p.id);
        assert_eq!(cat.find_project(p.id.as_str()).unwrap().name, "shop");
        let (pid, scope) = cat.authenticate(&p.write_key).unwrap().unwrap();
        assert_eq!((pid, scope), (p.id.clone(), KeyScope::Write));
        let (_, scope) = cat.authenticate(&p.read_key).unwrap().unwrap();
        assert_eq!(scope, KeyScope::Read);
        assert!(cat.authenticate("tw_nope").unwrap().is_none());
        assert!(cat.create_project("  ").is_err());
    }
}
