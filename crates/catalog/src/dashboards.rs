//! Dashboards and their share links. A dashboard is stored as the JSON definition the API took;
//! the visualization crate decides what it means. A share link is a random token of which only
//! a SHA-256 hash is kept: it is shown once, and revoking it makes it fail at once.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use tally_core::ProjectId;

use crate::keys::{hash_key, new_secret};
use crate::{Catalog, CatalogError, Result, now_rfc3339};

/// A saved dashboard as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardRow {
    pub id: String,
    pub project: ProjectId,
    pub definition: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A share link as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShareRow {
    pub id: String,
    pub dashboard_id: String,
    /// The token's first characters, to tell links apart.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A new share link: the only moment its token is seen in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedShare {
    #[serde(flatten)]
    pub share: ShareRow,
    pub token: String,
}

const SHARE_PREFIX: &str = "tsh_";

fn not_found(id: &str) -> CatalogError {
    CatalogError::NotFound {
        what: "dashboard",
        name: id.to_owned(),
    }
}

fn dashboard_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn into_row(
    (id, project, definition, created_at, updated_at): (String, String, String, String, String),
) -> Option<DashboardRow> {
    Some(DashboardRow {
        project: ProjectId::parse(&project)?,
        id,
        definition,
        created_at,
        updated_at,
    })
}

fn share_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ShareRow> {
    Ok(ShareRow {
        id: r.get(0)?,
        dashboard_id: r.get(1)?,
        prefix: r.get(2)?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

const COLUMNS: &str = "id, project_id, definition, created_at, updated_at";

impl Catalog {
    /// Saves a new dashboard, unless the project already has `max` of them.
    pub fn create_dashboard(
        &self,
        project: &ProjectId,
        id: &str,
        definition: &str,
        max: usize,
    ) -> Result<()> {
        let now = now_rfc3339();
        self.with(|c| {
            let tx = c.transaction()?;
            let n: i64 = tx.query_row(
                "SELECT COUNT(*) FROM dashboards WHERE project_id = ?1",
                [project.as_str()],
                |r| r.get(0),
            )?;
            if n as usize >= max {
                return Err(CatalogError::Invalid(format!(
                    "a project may have at most {max} dashboards"
                )));
            }
            tx.execute(
                "INSERT INTO dashboards(id, project_id, definition, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![id, project.as_str(), definition, now],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    pub fn update_dashboard(&self, project: &ProjectId, id: &str, definition: &str) -> Result<()> {
        let now = now_rfc3339();
        self.with(|c| {
            let n = c.execute(
                "UPDATE dashboards SET definition = ?3, updated_at = ?4
                 WHERE id = ?1 AND project_id = ?2",
                params![id, project.as_str(), definition, now],
            )?;
            if n == 0 {
                return Err(not_found(id));
            }
            Ok(())
        })
    }

    /// One of the project's dashboards (another project's is not found).
    pub fn dashboard(&self, project: &ProjectId, id: &str) -> Result<DashboardRow> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM dashboards WHERE id = ?1 AND project_id = ?2"),
                params![id, project.as_str()],
                dashboard_row,
            )
            .optional()?
            .and_then(into_row)
            .ok_or_else(|| not_found(id))
        })
    }

    pub fn dashboards(&self, project: &ProjectId) -> Result<Vec<DashboardRow>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM dashboards WHERE project_id = ?1 ORDER BY created_at, id"
            ))?;
            let rows = stmt
                .query_map([project.as_str()], dashboard_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows.into_iter().filter_map(into_row).collect())
        })
    }

    /// Deletes a dashboard with its share links. Returns false when there was none.
    pub fn delete_dashboard(&self, project: &ProjectId, id: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM dashboards WHERE id = ?1 AND project_id = ?2",
                params![id, project.as_str()],
            )? > 0)
        })
    }

    /// Creates a share link for one of the project's dashboards.
    pub fn create_share(&self, project: &ProjectId, dashboard_id: &str) -> Result<CreatedShare> {
        self.dashboard(project, dashboard_id)?;
        let token = new_secret(SHARE_PREFIX);
        let share = ShareRow {
            id: format!("shr_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
            dashboard_id: dashboard_id.to_owned(),
            prefix: token[..SHARE_PREFIX.len() + 4].to_owned(),
            created_at: now_rfc3339(),
            revoked_at: None,
        };
        self.with(|c| {
            c.execute(
                "INSERT INTO dashboard_shares(id, dashboard_id, token_hash, prefix, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    share.id,
                    share.dashboard_id,
                    hash_key(&token),
                    share.prefix,
                    share.created_at
                ],
            )?;
            Ok(())
        })?;
        Ok(CreatedShare { share, token })
    }

    /// A dashboard's share links, revoked ones included, oldest first.
    pub fn shares(&self, project: &ProjectId, dashboard_id: &str) -> Result<Vec<ShareRow>> {
        self.dashboard(project, dashboard_id)?;
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, dashboard_id, prefix, created_at, revoked_at FROM dashboard_shares
                 WHERE dashboard_id = ?1 ORDER BY created_at, id",
            )?;
            Ok(stmt
                .query_map([dashboard_id], share_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Revokes a share link of one of the project's dashboards. Returns false when there is
    /// no such link; revoking twice keeps the first time.
    pub fn revoke_share(
        &self,
        project: &ProjectId,
        dashboard_id: &str,
        share_id: &str,
    ) -> Result<bool> {
        self.dashboard(project, dashboard_id)?;
        let now = now_rfc3339();
        self.with(|c| {
            Ok(c.execute(
                "UPDATE dashboard_shares SET revoked_at = COALESCE(revoked_at, ?3)
                 WHERE id = ?1 AND dashboard_id = ?2",
                params![share_id, dashboard_id, now],
            )? > 0)
        })
    }

    /// The dashboard a share token opens, if the token exists and is not revoked.
    pub fn shared_dashboard(&self, token: &str) -> Result<Option<DashboardRow>> {
        let hash = hash_key(token);
        self.with(|c| {
            Ok(c.query_row(
                "SELECT d.id, d.project_id, d.definition, d.created_at, d.updated_at
                 FROM dashboard_shares s JOIN dashboards d ON d.id = s.dashboard_id
                 WHERE s.token_hash = ?1 AND s.revoked_at IS NULL",
                [hash],
                dashboard_row,
            )
            .optional()?
            .and_then(into_row))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_open_their_dashboard_until_revoked() {
        let catalog = Catalog::open_in_memory().unwrap();
        let a = catalog.create_project("a").unwrap().id;
        let b = catalog.create_project("b").unwrap().id;
        catalog.create_dashboard(&a, "d1", "{}", 10).unwrap();
        assert!(catalog.dashboard(&b, "d1").is_err(), "another project's");
        let created = catalog.create_share(&a, "d1").unwrap();
        assert!(created.token.starts_with("tsh_"));
        assert!(catalog.create_share(&b, "d1").is_err());
        assert_eq!(
            catalog
                .shared_dashboard(&created.token)
                .unwrap()
                .unwrap()
                .id,
            "d1"
        );
        assert!(catalog.shared_dashboard("tsh_nope").unwrap().is_none());
        assert!(
            !catalog
                .revoke_share(&b, "d1", &created.share.id)
                .is_ok_and(|r| r)
        );
        assert!(catalog.revoke_share(&a, "d1", &created.share.id).unwrap());
        assert!(catalog.shared_dashboard(&created.token).unwrap().is_none());
        let listed = catalog.shares(&a, "d1").unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].revoked_at.is_some());
        // Deleting the dashboard deletes its links.
        let other = catalog.create_share(&a, "d1").unwrap();
        assert!(catalog.delete_dashboard(&a, "d1").unwrap());
        assert!(catalog.shared_dashboard(&other.token).unwrap().is_none());
    }

    #[test]
    fn the_dashboard_limit_is_enforced() {
        let catalog = Catalog::open_in_memory().unwrap();
        let a = catalog.create_project("a").unwrap().id;
        catalog.create_dashboard(&a, "d1", "{}", 1).unwrap();
        assert!(matches!(
            catalog.create_dashboard(&a, "d2", "{}", 1),
            Err(CatalogError::Invalid(_))
        ));
    }
}
