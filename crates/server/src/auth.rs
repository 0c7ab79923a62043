//! API keys: `Authorization: Bearer KEY` (and, for the Segment API, HTTP Basic or `writeKey`).
//! Look-ups are cached briefly, so a key created or revoked with the CLI takes effect within
//! seconds without a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use parking_lot::Mutex;
use tally_catalog::{Catalog, KeyScope};
use tally_core::ProjectId;

use crate::error::ApiError;

const TTL: Duration = Duration::from_secs(5);
const MAX_CACHED: usize = 10_000;

/// What a key (or a session) is good for: its project, scope and own rate.
type Grant = tally_catalog::KeyGrant;
/// A key's grant, or nothing (unknown or revoked).
type KeyGrant = Option<Grant>;

/// Requests per second a key may make, with bursts of twice as many; `None`: no limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimits {
    /// Write keys (ingest).
    pub write: Option<u32>,
    /// Read and admin keys (queries, dashboards, reports, exports).
    pub read: Option<u32>,
}

/// A token bucket: `tokens` left at `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    entries: Mutex<HashMap<String, (Instant, KeyGrant)>>,
    limits: RateLimits,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl KeyCache {
    pub(crate) fn with_limits(limits: RateLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Takes one request from `key`'s budget, or answers 429 with the seconds until the next.
    fn admit(&self, key: &str, g: &Grant) -> Result<(), ApiError> {
        // A key's own rate (`tally keys limit`) overrides the server's default for its scope.
        let rate = g.rate_limit.or(match g.scope {
            KeyScope::Write => self.limits.write,
            KeyScope::Read | KeyScope::Admin => self.limits.read,
        });
        let Some(rate) = rate.filter(|r| *r > 0).map(f64::from) else {
            return Ok(());
        };
        let burst = 2.0 * rate;
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_CACHED && !buckets.contains_key(key) {
            // Idle buckets are full anyway: forgetting them changes nothing.
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_CACHED {
                buckets.clear();
            }
        }
        let b = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0) as u64;
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "this key may make {rate} requests per second (bursts of {burst}); retry after {wait} s"
            ),
        )
        .field("authorization");
        e.retry_after_secs = Some(wait);
        Err(e)
    }

    fn lookup(&self, catalog: &Catalog, key: &str) -> Result<KeyGrant, ApiError> {
        if let Some((at, v)) = self.entries.lock().get(key)
            && at.elapsed() < TTL
        {
            return Ok(v.clone());
        }
        let v = catalog
            .key_grant(key)
            .map_err(|e| ApiError::internal("checking the API key failed", e))?;
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_CACHED {
            entries.clear();
        }
        entries.insert(key.to_owned(), (Instant::now(), v.clone()));
        Ok(v)
    }
}

/// The project of the request's key (`Authorization: Bearer KEY`), which must have `scope`.
pub(crate) fn authorize(
    cache: &KeyCache,
    catalog: &Catalog,
    headers: &HeaderMap,
    scope: KeyScope,
) -> Result<ProjectId, ApiError> {
    let g = identify_grant(cache, catalog, headers)?;
    let field = if bearer(headers).is_some() {
        "authorization"
    } else {
        crate::session::PROJECT_HEADER
    };
    check_scope(g.scope, scope, field)?;
    if let Some(key) = bearer(headers).or_else(|| crate::session::session_token(headers)) {
        cache.admit(key, &g)?;
    }
    Ok(g.project)
}

/// The project and scope of the request's key, whatever its scope; without a key, of its
/// web UI session: the project named in `X-Tally-Project` and the scope of the user's role
/// there.
pub(crate) fn identify(
    cache: &KeyCache,
    catalog: &Catalog,
    headers: &HeaderMap,
) -> Result<(ProjectId, KeyScope), ApiError> {
    identify_grant(cache, catalog, headers).map(|g| (g.project, g.scope))
}

/// [`identify`], with the key's own rate (a session has none).
fn identify_grant(
    cache: &KeyCache,
    catalog: &Catalog,
    headers: &HeaderMap,
) -> Result<Grant, ApiError> {
    if let Some(key) = bearer(headers) {
        return grant(cache, catalog, key, "authorization");
    }
    if crate::session::session_token(headers).is_some() {
        let (project, role) = crate::session::session_grant(catalog, headers)?;
        return Ok(Grant {
            project,
            scope: role.scope(),
            rate_limit: None,
        });
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing_key",
        "send the project's key as `Authorization: Bearer KEY` (or sign in to the web UI)",
    )
    .field("authorization"))
}

fn grant(cache: &KeyCache, catalog: &Catalog, key: &str, field: &str) -> Result<Grant, ApiError> {
    cache.lookup(catalog, key)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_key",
            "the key is unknown or revoked",
        )
        .field(field)
    })
}

fn check_scope(got: KeyScope, scope: KeyScope, field: &str) -> Result<(), ApiError> {
    // An admin key may also do what a read key does.
    if got != scope && !(got == KeyScope::Admin && scope == KeyScope::Read) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_key_scope",
            format!(
                "a {} key cannot be used here; this endpoint needs a {} key",
                got.as_str(),
                scope.as_str()
            ),
        )
        .field(field));
    }
    Ok(())
}

/// The project of `key`, which must have `scope`; errors name `field` (where the key came from).
pub(crate) fn check_key(
    cache: &KeyCache,
    catalog: &Catalog,
    key: &str,
    scope: KeyScope,
    field: &str,
) -> Result<ProjectId, ApiError> {
    let g = grant(cache, catalog, key, field)?;
    check_scope(g.scope, scope, field)?;
    cache.admit(key, &g)?;
    Ok(g.project)
}

/// The user name of `Authorization: Basic ...` (Segment's libraries send the write key as the
/// user name with an empty password), or a bearer key.
pub(crate) fn basic_user_or_bearer(headers: &HeaderMap) -> Option<String> {
    if let Some(k) = bearer(headers) {
        return Some(k.to_owned());
    }
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    (!user.is_empty()).then(|| user.to_owned())
}

/// Who made the request, for the audit log: the prefix of its key, as `/v1/keys` lists it, or
/// the signed-in user's email.
pub(crate) fn actor(catalog: &Catalog, headers: &HeaderMap) -> String {
    if let Some(key) = bearer(headers) {
        return format!("key {}", key.chars().take(7).collect::<String>());
    }
    match crate::session::session_user(catalog, headers) {
        Ok((_, user)) => format!("user {}", user.email),
        Err(_) => "unknown".to_owned(),
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, key) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(key.trim())
        .filter(|k| !k.is_empty())
}
