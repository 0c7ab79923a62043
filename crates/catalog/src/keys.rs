//! API keys. Only a SHA-256 hash of each key is stored; the key itself is shown once.

use rand::Rng;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tally_core::ProjectId;

use crate::{Catalog, Result, now_rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    /// May only ingest events.
    Write,
    /// May only query.
    Read,
    /// May manage the project (schemas, settings); reserved for the access-control work.
    Admin,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Self::Write => "tw_",
            Self::Read => "tr_",
            Self::Admin => "ta_",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "write" => Some(Self::Write),
            "read" => Some(Self::Read),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A key as listed: never the secret itself.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub scope: KeyScope,
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Requests per second this key may make; `None`: the server's default for its scope,
    /// 0: no limit.
    pub rate_limit: Option<u32>,
}

/// What a key is good for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub project: ProjectId,
    pub scope: KeyScope,
    /// The key's own request rate, if it has one (see [`ApiKey::rate_limit`]).
    pub rate_limit: Option<u32>,
}

pub(crate) fn new_key(scope: KeyScope) -> String {
    new_secret(scope.prefix())
}

/// `prefix` and 32 random base-62 characters (190 bits).
pub(crate) fn new_secret(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let body: String = (0..32)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{body}")
}

pub(crate) fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub(crate) fn insert_key(
    tx: &Transaction<'_>,
    project: &ProjectId,
    scope: KeyScope,
    key: &str,
) -> rusqlite::Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    tx.execute(
        "INSERT INTO api_keys(id, project_id, scope, key_hash, prefix, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            &id,
            project.as_str(),
            scope.as_str(),
            hash_key(key),
            &key[..key.len().min(7)],
            now_rfc3339()
        ],
    )?;
    Ok(id)
}

impl Catalog {
    /// The project and scope of a key that exists and is not revoked.
    pub fn authenticate(&self, key: &str) -> Result<Option<(ProjectId, KeyScope)>> {
        Ok(self.key_grant(key)?.map(|g| (g.project, g.scope)))
    }

    /// The project, scope and rate of a key that exists and is not revoked.
    pub fn key_grant(&self, key: &str) -> Result<Option<KeyGrant>> {
        let hash = hash_key(key);
        self.with(|c| {
            let row: Option<(String, String, Option<i64>)> = c
                .query_row(
                    "SELECT project_id, scope, rate_limit FROM api_keys
                     WHERE key_hash = ?1 AND revoked_at IS NULL",
                    [hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            Ok(row.and_then(|(p, s, limit)| {
                Some(KeyGrant {
                    project: ProjectId::parse(&p)?,
                    scope: KeyScope::parse(&s)?,
                    rate_limit: limit.and_then(|l| u32::try_from(l).ok()),
                })
            }))
        })
    }

    /// Sets the request rate of live key `id` of `project` (`None`: back to the server's
    /// default); false when the project has no such live key.
    pub fn set_key_rate_limit(
        &self,
        project: &ProjectId,
        id: &str,
        rate_limit: Option<u32>,
    ) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE api_keys SET rate_limit = ?3
                 WHERE id = ?1 AND project_id = ?2 AND revoked_at IS NULL",
                params![id, project.as_str(), rate_limit.map(i64::from)],
            )? == 1)
        })
    }

    /// A new key of `scope` for `project`: as listed, and its secret (shown only now).
    pub fn create_key(&self, project: &ProjectId, scope: KeyScope) -> Result<(ApiKey, String)> {
        let secret = new_key(scope);
        let id = self.with(|c| {
            let tx = c.transaction()?;
            let id = insert_key(&tx, project, scope, &secret)?;
            tx.commit()?;
            Ok(id)
        })?;
        Ok((self.key(project, &id)?, secret))
    }

    /// Revokes key `id` of `project`; false when the project has no such live key.
    pub fn revoke_key(&self, project: &ProjectId, id: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE api_keys SET revoked_at = ?3
                 WHERE id = ?1 AND project_id = ?2 AND revoked_at IS NULL",
                params![id, project.as_str(), now_rfc3339()],
            )? == 1)
        })
    }

    /// Replaces live key `id` of `project` by a new key of the same scope, in one transaction:
    /// the old one stops working, the new one (returned with its secret) starts.
    pub fn rotate_key(&self, project: &ProjectId, id: &str) -> Result<Option<(ApiKey, String)>> {
        let scope: Option<String> = self.with(|c| {
            Ok(c.query_row(
                "SELECT scope FROM api_keys WHERE id = ?1 AND project_id = ?2 AND revoked_at IS NULL",
                params![id, project.as_str()],
                |r| r.get(0),
            )
            .optional()?)
        })?;
        let Some(scope) = scope.as_deref().and_then(KeyScope::parse) else {
            return Ok(None);
        };
        let secret = new_key(scope);
        let new_id = self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE api_keys SET revoked_at = ?3
                 WHERE id = ?1 AND project_id = ?2 AND revoked_at IS NULL",
                params![id, project.as_str(), now_rfc3339()],
            )?;
            let new_id = if n == 1 {
                let new_id = insert_key(&tx, project, scope, &secret)?;
                // The new key keeps the old one's rate.
                tx.execute(
                    "UPDATE api_keys SET rate_limit = (SELECT rate_limit FROM api_keys WHERE id = ?1)
                     WHERE id = ?2",
                    params![id, new_id],
                )?;
                Some(new_id)
            } else {
                None
            };
            tx.commit()?;
            Ok(new_id)
        })?;
        match new_id {
            Some(new_id) => Ok(Some((self.key(project, &new_id)?, secret))),
            None => Ok(None),
        }
    }

    fn key(&self, project: &ProjectId, id: &str) -> Result<ApiKey> {
        self.list_keys(project)?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| crate::CatalogError::NotFound {
                what: "key",
                name: id.to_owned(),
            })
    }

    pub fn list_keys(&self, project: &ProjectId) -> Result<Vec<ApiKey>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, scope, prefix, created_at, revoked_at, rate_limit FROM api_keys
                 WHERE project_id = ?1 ORDER BY created_at",
            )?;
            let rows = st.query_map([project.as_str()], |r| {
                let scope: String = r.get(1)?;
                Ok(ApiKey {
                    id: r.get(0)?,
                    scope: KeyScope::parse(&scope).unwrap_or(KeyScope::Read),
                    prefix: r.get(2)?,
                    created_at: r.get(3)?,
                    revoked_at: r.get(4)?,
                    rate_limit: r
                        .get::<_, Option<i64>>(5)?
                        .and_then(|l| u32::try_from(l).ok()),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}
