//! Web UI sessions and project members.
//!
//! `POST /v1/session` signs a user in with email and password and sets the session cookie
//! (`tally_session`: HttpOnly, `SameSite=Strict`, `Secure` unless `--insecure-cookies`, seven
//! days). A signed-in request names its project in `X-Tally-Project`; the user's role there
//! decides what it may do, as a key's scope does (viewer: read, admin and owner: admin).
//! Requests that change something (any method but GET, HEAD and OPTIONS) must also send the
//! session's CSRF token in `X-CSRF-Token`: a hash of the session token, which the sign-in answer
//! and `GET /v1/session` return and which no other site can read. The cookie is never sent on
//! cross-site requests (`SameSite=Strict`), and the API has no CORS outside ingest, so the token
//! is a second lock, not the only one.
//!
//! `GET /v1/members` lists a project's members (admin); `PUT /v1/members/{email}` with
//! `{"role"}` and `DELETE /v1/members/{email}` change them (an owner, or an admin key); the last
//! owner cannot be removed or demoted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tally_catalog::{Catalog, CatalogError, KeyScope, Role, User};
use tally_core::ProjectId;

use crate::auth::{authorize, bearer};
use crate::error::{ApiError, read_json};
use crate::state::AppState;

pub(crate) const COOKIE: &str = "tally_session";
pub(crate) const PROJECT_HEADER: &str = "x-tally-project";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Failed sign-ins per email within [`THROTTLE_WINDOW`] before further attempts get 429.
const MAX_FAILED_SIGN_INS: u32 = 10;
/// Sign-ins per client address within [`THROTTLE_WINDOW`] (whatever the emails): guessing
/// across many accounts from one place.
const MAX_SIGN_INS_PER_ADDRESS: u32 = 100;
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The session token of the request's `Cookie` header.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of a session: derived from its secret token, so nothing more is stored.
pub(crate) fn csrf_token(session: &str) -> String {
    hex::encode(Sha256::digest(format!("tally-csrf:{session}").as_bytes()))
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware: a request that carries the session cookie (and no key) and changes something
/// must carry the session's CSRF token. Signing in is exempt (it needs no session).
pub(crate) async fn require_csrf(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let signing_in = request.uri().path() == "/v1/session" && request.method() == Method::POST;
    let headers = request.headers();
    if !safe
        && !signing_in
        && bearer(headers).is_none()
        && let Some(token) = session_token(headers)
    {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same(sent.as_bytes(), csrf_token(token).as_bytes()) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "a signed-in request that changes something must send the session's CSRF token in X-CSRF-Token",
            )
            .field(CSRF_HEADER)
            .into_response();
        }
    }
    next.run(request).await
}

fn catalog_error(e: CatalogError) -> ApiError {
    ApiError::internal("the metadata store failed", e)
}

/// The user of the request's session cookie.
pub(crate) fn session_user(
    catalog: &Catalog,
    headers: &HeaderMap,
) -> Result<(String, User), ApiError> {
    let token = session_token(headers).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_signed_in", "sign in first").field("cookie")
    })?;
    let user = catalog
        .session_user(token)
        .map_err(catalog_error)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_session",
                "the session has ended or never existed; sign in again",
            )
            .field("cookie")
        })?;
    Ok((token.to_owned(), user))
}

/// The project a signed-in request names, and the user's role in it.
pub(crate) fn session_grant(
    catalog: &Catalog,
    headers: &HeaderMap,
) -> Result<(ProjectId, Role), ApiError> {
    let (_, user) = session_user(catalog, headers)?;
    let named = headers
        .get(PROJECT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let project = ProjectId::parse(named.trim()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_project",
            "a signed-in request names its project's id in the X-Tally-Project header",
        )
        .field(PROJECT_HEADER)
    })?;
    let role = catalog
        .role_of(&user.id, &project)
        .map_err(catalog_error)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "not_a_member",
                format!("you have no role in project `{project}`"),
            )
            .field(PROJECT_HEADER)
        })?;
    Ok((project, role))
}

/// Sign-in attempts per email, to slow down password guessing, and a bound on the password
/// checks running at once (each takes 19 MiB and a core for tens of milliseconds).
#[derive(Debug)]
pub(crate) struct SignInThrottle {
    attempts: Mutex<HashMap<String, (u32, Instant)>>,
    hashing: tokio::sync::Semaphore,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            attempts: Mutex::new(HashMap::new()),
            hashing: tokio::sync::Semaphore::new(cores),
        }
    }
}

impl SignInThrottle {
    /// Counts an attempt for `email` before its password is checked (so that concurrent
    /// guesses count too), or refuses it when the window's attempts are used up.
    fn attempt(&self, key: &str, max: u32, what: &str) -> Result<(), ApiError> {
        let mut map = self.attempts.lock();
        if map.len() >= 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < THROTTLE_WINDOW);
        }
        let entry = map.entry(key.to_owned()).or_insert((0, Instant::now()));
        let elapsed = entry.1.elapsed();
        if elapsed >= THROTTLE_WINDOW {
            *entry = (0, Instant::now());
        } else if entry.0 >= max {
            let wait = THROTTLE_WINDOW.saturating_sub(elapsed).as_secs().max(1);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many sign-ins for {what}; retry after {wait} s"),
            );
            if what == "this email" {
                e = e.field("email");
            }
            e.retry_after_secs = Some(wait);
            return Err(e);
        }
        entry.0 += 1;
        Ok(())
    }

    /// A sign-in succeeded: the email's attempts are forgotten and the address gets its one
    /// back (so that a shared address, an office or a proxy, is not used up by good sign-ins).
    fn succeeded(&self, email: &str, address: Option<&str>) {
        let mut map = self.attempts.lock();
        map.remove(email);
        if let Some(entry) = address.and_then(|a| map.get_mut(a)) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }
}

/// The throttle's key of a client address: an IPv4 address, or the /64 of an IPv6 one (which
/// one holder has whole).
fn address_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("address {:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        _ => format!("address {ip}"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: String,
    password: String,
}

/// The answer about a session: the user, its projects and the CSRF token, never cached.
fn session_response(state: &AppState, user: &User, token: &str) -> Result<Response, ApiError> {
    let mut r = Json(session_body(state, user, token)?).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

fn session_body(state: &AppState, user: &User, token: &str) -> Result<Value, ApiError> {
    let projects = state
        .inner
        .catalog
        .memberships(&user.id)
        .map_err(catalog_error)?;
    Ok(json!({
        "user": {"id": user.id, "email": user.email},
        "projects": projects.iter().map(|m| json!({
            "id": m.project_id, "name": m.project_name, "role": m.role,
        })).collect::<Vec<_>>(),
        "csrf_token": csrf_token(token),
    }))
}

fn cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.inner.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tally_session=; Max-Age=0"))
}

/// `POST /v1/session`: signs in; sets the session cookie.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        // Also what keeps a cross-site form from signing a browser in.
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the credentials as JSON (Content-Type: application/json)",
        )
        .field("content-type"));
    }
    let request: SignIn = read_json(body, 8 << 10).await?;
    let email = request.email.trim().to_lowercase();
    let address = crate::tracker::client_ip(&state, &headers, peer).map(|ip| address_key(&ip));
    if let Some(key) = &address {
        (state.inner.sign_ins).attempt(key, MAX_SIGN_INS_PER_ADDRESS, "this address")?;
    }
    (state.inner.sign_ins).attempt(&email, MAX_FAILED_SIGN_INS, "this email")?;
    let user = {
        let _one_of_few = state
            .inner
            .sign_ins
            .hashing
            .acquire()
            .await
            .map_err(|e| ApiError::internal("checking the password failed", e))?;
        let catalog = std::sync::Arc::clone(&state.inner.catalog);
        let (e, p) = (email.clone(), request.password);
        tokio::task::spawn_blocking(move || catalog.verify_login(&e, &p))
            .await
            .map_err(|e| ApiError::internal("checking the password failed", e))?
            .map_err(catalog_error)?
    };
    let Some(user) = user else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "the email or the password is wrong",
        )
        .field("password"));
    };
    state.inner.sign_ins.succeeded(&email, address.as_deref());
    let token = state
        .inner
        .catalog
        .create_session(&user.id, SESSION_TTL.as_secs() as i64)
        .map_err(catalog_error)?;
    let mut r = session_response(&state, &user, &token)?;
    r.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&state, &token, SESSION_TTL.as_secs()),
    );
    Ok(r)
}

/// `GET /v1/session`: the signed-in user, its projects and the CSRF token.
pub(crate) async fn current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (token, user) = session_user(&state.inner.catalog, &headers)?;
    session_response(&state, &user, &token)
}

/// `DELETE /v1/session`: signs out (the session ends on the server, the cookie is cleared).
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (token, _) = session_user(&state.inner.catalog, &headers)?;
    state
        .inner
        .catalog
        .delete_session(&token)
        .map_err(catalog_error)?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    Ok(r)
}

/// The project of a signed-in owner's request; anything else gets 403 `owner_only`.
fn owner(state: &AppState, headers: &HeaderMap, what: &str) -> Result<ProjectId, ApiError> {
    let s = &state.inner;
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "owner_only",
            format!("only a signed-in owner of the project {what}"),
        )
    };
    if bearer(headers).is_some() {
        return Err(refused());
    }
    let (project, role) = session_grant(&s.catalog, headers)?;
    if role != Role::Owner {
        return Err(refused());
    }
    Ok(project)
}

/// The project of a request that may create, rotate or revoke keys: the admin key, or a
/// signed-in owner (an admin's session may not mint keys that would outlive its role).
pub(crate) fn key_manager(state: &AppState, headers: &HeaderMap) -> Result<ProjectId, ApiError> {
    let s = &state.inner;
    if bearer(headers).is_some() {
        return authorize(&s.keys, &s.catalog, headers, KeyScope::Admin);
    }
    owner(state, headers, "or its admin key manages keys")
}

/// `GET /v1/members` (admin): the project's members and their roles.
pub(crate) async fn list_members(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let s = &state.inner;
    let project = authorize(&s.keys, &s.catalog, &headers, KeyScope::Admin)?;
    let members = s.catalog.members(&project).map_err(catalog_error)?;
    Ok(Json(json!({ "members": members })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    role: String,
}

fn no_user(email: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "user_not_found",
        format!("no user `{email}`; create it with `tally users create`"),
    )
    .field("email")
}

fn last_owner() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "last_owner",
        "the project's last owner cannot be removed or demoted; make someone else owner first",
    )
    .field("email")
}

/// `PUT /v1/members/{email}` (owner): gives an existing user a role in the project.
pub(crate) async fn set_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(email): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let project = owner(&state, &headers, "manages members")?;
    let request: SetRole = read_json(body, 4 << 10).await?;
    let role = Role::parse(&request.role).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_role",
            format!(
                "unknown role `{}`: use viewer, admin or owner",
                request.role
            ),
        )
        .field("role")
    })?;
    match state.inner.catalog.set_role(&email, &project, role) {
        Ok(()) => {}
        Err(CatalogError::NotFound { .. }) => return Err(no_user(&email)),
        Err(CatalogError::Conflict { .. }) => return Err(last_owner()),
        Err(e) => return Err(catalog_error(e)),
    }
    Ok(Json(json!({"email": email.trim(), "role": role})))
}

/// `DELETE /v1/members/{email}` (owner): takes the user's role in the project away.
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(email): Path<String>,
) -> Result<StatusCode, ApiError> {
    let project = owner(&state, &headers, "manages members")?;
    match state.inner.catalog.remove_role(&email, &project) {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_a_member",
            format!("`{email}` has no role in the project"),
        )
        .field("email")),
        Err(CatalogError::NotFound { .. }) => Err(no_user(&email)),
        Err(CatalogError::Conflict { .. }) => Err(last_owner()),
        Err(e) => Err(catalog_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tally_session=ts_abc ; b=2"),
        );
        assert_eq!(session_token(&h), Some("ts_abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("tally_session="));
        assert_eq!(session_token(&h), None);
        assert_ne!(csrf_token("ts_abc"), csrf_token("ts_abd"));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
        assert_eq!(
            address_key("2001:db8:1:2:aa::1"),
            address_key("2001:db8:1:2:bb::9")
        );
        assert_ne!(
            address_key("2001:db8:1:3::1"),
            address_key("2001:db8:1:2::1")
        );
        assert_eq!(address_key("203.0.113.7"), "address 203.0.113.7");
    }
}
