//! API keys: `Authorization: Bearer KEY`. Look-ups are cached briefly, so a key created or
//! revoked with the CLI takes effect within seconds without a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use parking_lot::Mutex;
use tally_catalog::{Catalog, KeyScope};
use tally_core::ProjectId;

use crate::error::ApiError;

const TTL: Duration = Duration::from_secs(5);
const MAX_CACHED: usize = 10_000;

/// What a key is good for: its project and scope, or nothing (unknown or revoked).
type KeyGrant = Option<(ProjectId, KeyScope)>;

#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    entries: Mutex<HashMap<String, (Instant, KeyGrant)>>,
}

impl KeyCache {
    fn lookup(
        &self,
        catalog: &Catalog,
        key: &str,
    ) -> Result<Option<(ProjectId, KeyScope)>, ApiError> {
        if let Some((at, v)) = self.entries.lock().get(key)
            && at.elapsed() < TTL
        {
            return Ok(v.clone());
        }
        let v = catalog
            .authenticate(key)
            .map_err(|e| ApiError::internal("checking the API key failed", e))?;
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_CACHED {
            entries.clear();
        }
        entries.insert(key.to_owned(), (Instant::now(), v.clone()));
        Ok(v)
    }
}

/// The project of the request's key, which must have `scope`.
pub(crate) fn authorize(
    cache: &KeyCache,
    catalog: &Catalog,
    headers: &HeaderMap,
    scope: KeyScope,
) -> Result<ProjectId, ApiError> {
    let key = bearer(headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_key",
            "send the project's key as `Authorization: Bearer KEY`",
        )
        .field("authorization")
    })?;
    match cache.lookup(catalog, key)? {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_key",
            "the key is unknown or revoked",
        )
        .field("authorization")),
        Some((_, got)) if got != scope => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_key_scope",
            format!(
                "a {} key cannot be used here; this endpoint needs a {} key",
                got.as_str(),
                scope.as_str()
            ),
        )
        .field("authorization")),
        Some((project, _)) => Ok(project),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, key) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(key.trim())
        .filter(|k| !k.is_empty())
}
