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

    fn parse(s: &str) -> Option<Self> {
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
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO api_keys(id, project_id, scope, key_hash, prefix, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            uuid::Uuid::now_v7().to_string(),
            project.as_str(),
            scope.as_str(),
            hash_key(key),
            &key[..key.len().min(7)],
            now_rfc3339()
        ],
    )?;
    Ok(())
}

impl Catalog {
    /// The project and scope of a key that exists and is not revoked.
    pub fn authenticate(&self, key: &str) -> Result<Option<(ProjectId, KeyScope)>> {
        let hash = hash_key(key);
        self.with(|c| {
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT project_id, scope FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL",
                    [hash],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(row.and_then(|(p, s)| Some((ProjectId::parse(&p)?, KeyScope::parse(&s)?))))
        })
    }

    pub fn list_keys(&self, project: &ProjectId) -> Result<Vec<ApiKey>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, scope, prefix, created_at, revoked_at FROM api_keys
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
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}
