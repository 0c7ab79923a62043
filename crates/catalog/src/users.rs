//! Users, their roles per project and their web UI sessions.
//!
//! Passwords are stored as Argon2id PHC strings (the `argon2` crate's defaults: 19 MiB, two
//! passes, one lane, a random 16-byte salt). Sessions are random tokens of which only a SHA-256
//! hash is kept, like API keys. A role gives a user of the web UI what a key's scope gives a
//! client: `viewer` reads (a read key), `admin` also manages (an admin key: persons, keys,
//! retention), and `owner` also manages the project's members.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use tally_core::ProjectId;

use crate::keys::{hash_key, new_secret};
use crate::{Catalog, CatalogError, KeyScope, Result, now_rfc3339};

/// Shortest and longest password accepted (the longest bounds the hashing work).
pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_BYTES: usize = 1024;
const MAX_EMAIL_BYTES: usize = 254;

/// A user's role in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    /// The key scope whose endpoints the role may use.
    pub fn scope(self) -> KeyScope {
        match self {
            Self::Viewer => KeyScope::Read,
            Self::Admin | Self::Owner => KeyScope::Admin,
        }
    }
}

/// A user as listed: never the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub created_at: String,
}

/// A project a user has a role in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    pub project_id: ProjectId,
    pub project_name: String,
    pub role: Role,
}

/// A user with a role in a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub role: Role,
}

fn check_email(email: &str) -> Result<String> {
    let e = email.trim();
    let ok = e.len() <= MAX_EMAIL_BYTES
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if !ok {
        return Err(CatalogError::Invalid(format!(
            "`{email}` is not an email address (name@domain, at most {MAX_EMAIL_BYTES} bytes)"
        )));
    }
    Ok(e.to_owned())
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(CatalogError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(CatalogError::Invalid(format!(
            "the password must have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| CatalogError::Invalid(format!("a password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CatalogError::Invalid(format!("hashing the password failed: {e}")))
}

fn password_matches(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Verified against when the email is unknown, so that a wrong email costs as long as a wrong
/// password (no telling which accounts exist by timing).
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not anyone's password").unwrap_or_default())
}

/// A `User` from a row whose first columns are `id, email, created_at`.
fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        created_at: r.get(2)?,
    })
}

/// Fails when `user` is the only owner of `project` (checked in the caller's transaction, so
/// that two owners demoting each other at once cannot both succeed).
fn refuse_last_owner(
    tx: &rusqlite::Transaction<'_>,
    user: &User,
    project: &ProjectId,
) -> Result<()> {
    let owners: Vec<String> = {
        let mut st =
            tx.prepare("SELECT user_id FROM memberships WHERE project_id = ?1 AND role = 'owner'")?;
        st.query_map([project.as_str()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    if owners.len() == 1 && owners[0] == user.id {
        return Err(CatalogError::Conflict {
            what: "the project's last owner",
            name: user.email.clone(),
        });
    }
    Ok(())
}

impl Catalog {
    /// Creates a user. The password is hashed before the database is touched.
    pub fn create_user(&self, email: &str, password: &str) -> Result<User> {
        let email = check_email(email)?;
        check_password(password)?;
        let hash = hash_password(password)?;
        let id = uuid::Uuid::now_v7().to_string();
        let created_at = now_rfc3339();
        self.with(|c| {
            let exists: Option<String> = c
                .query_row("SELECT id FROM users WHERE email = ?1", [&email], |r| {
                    r.get(0)
                })
                .optional()?;
            if exists.is_some() {
                return Err(CatalogError::Conflict {
                    what: "user",
                    name: email.clone(),
                });
            }
            c.execute(
                "INSERT INTO users(id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, email, hash, created_at],
            )?;
            Ok(())
        })?;
        Ok(User {
            id,
            email,
            created_at,
        })
    }

    /// Replaces a user's password and ends all of the user's sessions.
    pub fn set_password(&self, email: &str, password: &str) -> Result<()> {
        check_password(password)?;
        let user = self.user(email)?;
        let hash = hash_password(password)?;
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                params![user.id, hash],
            )?;
            tx.execute("DELETE FROM sessions WHERE user_id = ?1", [&user.id])?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The user with `email` (case-insensitive).
    pub fn user(&self, email: &str) -> Result<User> {
        self.with(|c| {
            c.query_row(
                "SELECT id, email, created_at FROM users WHERE email = ?1",
                [email.trim()],
                user_row,
            )
            .optional()?
            .ok_or_else(|| CatalogError::NotFound {
                what: "user",
                name: email.to_owned(),
            })
        })
    }

    pub fn users(&self) -> Result<Vec<User>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id, email, created_at FROM users ORDER BY email")?;
            let rows = st.query_map([], user_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Deletes a user with its roles and sessions; false when there was none. Refuses
    /// (`Conflict`) while the user is the last owner of a project.
    pub fn delete_user(&self, email: &str) -> Result<bool> {
        let user = match self.user(email) {
            Ok(u) => u,
            Err(CatalogError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.with(|c| {
            let tx = c.transaction()?;
            let owned: Vec<String> = {
                let mut st = tx.prepare(
                    "SELECT project_id FROM memberships WHERE user_id = ?1 AND role = 'owner'",
                )?;
                st.query_map([&user.id], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            for p in owned.iter().filter_map(|p| ProjectId::parse(p)) {
                refuse_last_owner(&tx, &user, &p)?;
            }
            let n = tx.execute("DELETE FROM users WHERE id = ?1", [&user.id])?;
            tx.commit()?;
            Ok(n == 1)
        })
    }

    /// Gives the user `role` in `project` (replacing the role it had). Refuses (`Conflict`) to
    /// demote the project's last owner.
    pub fn set_role(&self, email: &str, project: &ProjectId, role: Role) -> Result<()> {
        let user = self.user(email)?;
        self.with(|c| {
            let tx = c.transaction()?;
            if role != Role::Owner {
                refuse_last_owner(&tx, &user, project)?;
            }
            tx.execute(
                "INSERT INTO memberships(user_id, project_id, role, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(user_id, project_id) DO UPDATE SET role = excluded.role",
                params![user.id, project.as_str(), role.as_str(), now_rfc3339()],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Removes the user's role in `project`; false when it had none. Refuses (`Conflict`) to
    /// remove the project's last owner.
    pub fn remove_role(&self, email: &str, project: &ProjectId) -> Result<bool> {
        let user = self.user(email)?;
        self.with(|c| {
            let tx = c.transaction()?;
            refuse_last_owner(&tx, &user, project)?;
            let n = tx.execute(
                "DELETE FROM memberships WHERE user_id = ?1 AND project_id = ?2",
                params![user.id, project.as_str()],
            )?;
            tx.commit()?;
            Ok(n == 1)
        })
    }

    /// The project's members, owners first.
    pub fn members(&self, project: &ProjectId) -> Result<Vec<Member>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT u.id, u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.project_id = ?1 ORDER BY u.email",
            )?;
            let rows = st.query_map([project.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (user_id, email, role) = row?;
                if let Some(role) = Role::parse(&role) {
                    out.push(Member {
                        user_id,
                        email,
                        role,
                    });
                }
            }
            out.sort_by(|a, b| b.role.cmp(&a.role).then_with(|| a.email.cmp(&b.email)));
            Ok(out)
        })
    }

    /// The projects the user has a role in, by name.
    pub fn memberships(&self, user_id: &str) -> Result<Vec<Membership>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT p.id, p.name, m.role FROM memberships m JOIN projects p ON p.id = m.project_id
                 WHERE m.user_id = ?1 ORDER BY p.name",
            )?;
            let rows = st.query_map([user_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, name, role) = row?;
                if let (Some(project_id), Some(role)) = (ProjectId::parse(&id), Role::parse(&role)) {
                    out.push(Membership {
                        project_id,
                        project_name: name,
                        role,
                    });
                }
            }
            Ok(out)
        })
    }

    /// The user's role in `project`, if any.
    pub fn role_of(&self, user_id: &str, project: &ProjectId) -> Result<Option<Role>> {
        self.with(|c| {
            let role: Option<String> = c
                .query_row(
                    "SELECT role FROM memberships WHERE user_id = ?1 AND project_id = ?2",
                    params![user_id, project.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(role.as_deref().and_then(Role::parse))
        })
    }

    /// The user whose email and password these are; `None` for a wrong password or an unknown
    /// email alike, after the same work.
    pub fn verify_login(&self, email: &str, password: &str) -> Result<Option<User>> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(None);
        }
        let row: Option<(User, String)> = self.with(|c| {
            Ok(c.query_row(
                "SELECT id, email, created_at, password_hash FROM users WHERE email = ?1",
                [email.trim()],
                |r| Ok((user_row(r)?, r.get(3)?)),
            )
            .optional()?)
        })?;
        match row {
            Some((user, hash)) => Ok(password_matches(password, &hash).then_some(user)),
            None => {
                let _ = password_matches(password, dummy_hash());
                Ok(None)
            }
        }
    }

    /// Starts a session for the user that ends `ttl_secs` from now; returns its token (shown
    /// once; only its hash is kept). Expired sessions are deleted on the way.
    pub fn create_session(&self, user_id: &str, ttl_secs: i64) -> Result<String> {
        let token = new_secret("ts_");
        let now = chrono::Utc::now().timestamp();
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?;
            c.execute(
                "INSERT INTO sessions(token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash_key(&token), user_id, now_rfc3339(), now + ttl_secs],
            )?;
            Ok(())
        })?;
        Ok(token)
    }

    /// The user of a live session.
    pub fn session_user(&self, token: &str) -> Result<Option<User>> {
        let now = chrono::Utc::now().timestamp();
        self.with(|c| {
            Ok(c.query_row(
                "SELECT u.id, u.email, u.created_at FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2",
                params![hash_key(token), now],
                user_row,
            )
            .optional()?)
        })
    }

    /// Ends a session; false when there was none.
    pub fn delete_session(&self, token: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                [hash_key(token)],
            )? == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_sign_in_with_their_password_only() {
        let c = Catalog::open_in_memory().unwrap();
        let p = c.create_project("shop").unwrap().id;
        let u = c.create_user("Ana@Shop.test", "correct horse").unwrap();
        assert!(matches!(
            c.create_user("ana@shop.test", "correct horse"),
            Err(CatalogError::Conflict { .. })
        ));
        assert!(matches!(
            c.create_user("nobody", "correct horse"),
            Err(CatalogError::Invalid(_))
        ));
        assert!(matches!(
            c.create_user("b@shop.test", "short"),
            Err(CatalogError::Invalid(_))
        ));
        assert_eq!(
            c.verify_login("ana@shop.test", "correct horse").unwrap(),
            Some(u.clone())
        );
        assert_eq!(
            c.verify_login("ana@shop.test", "wrong horse!").unwrap(),
            None
        );
        assert_eq!(
            c.verify_login("who@shop.test", "correct horse").unwrap(),
            None
        );
        // Stored as an Argon2id PHC string, never as the password.
        let stored: String = c
            .with(|c| Ok(c.query_row("SELECT password_hash FROM users", [], |r| r.get(0))?))
            .unwrap();
        assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
        assert!(!stored.contains("correct horse"));

        assert_eq!(c.role_of(&u.id, &p).unwrap(), None);
        c.set_role("ana@shop.test", &p, Role::Viewer).unwrap();
        c.set_role("ana@shop.test", &p, Role::Owner).unwrap();
        assert_eq!(c.role_of(&u.id, &p).unwrap(), Some(Role::Owner));
        assert_eq!(c.memberships(&u.id).unwrap()[0].project_name, "shop");
        assert_eq!(c.members(&p).unwrap().len(), 1);

        let token = c.create_session(&u.id, 60).unwrap();
        assert_eq!(c.session_user(&token).unwrap(), Some(u.clone()));
        assert_eq!(c.session_user("ts_made_up").unwrap(), None);
        let expired = c.create_session(&u.id, 0).unwrap();
        assert_eq!(c.session_user(&expired).unwrap(), None);
        // A new password ends every session.
        c.set_password("ana@shop.test", "battery staple").unwrap();
        assert_eq!(c.session_user(&token).unwrap(), None);
        assert!(
            c.verify_login("ana@shop.test", "battery staple")
                .unwrap()
                .is_some()
        );
        let token = c.create_session(&u.id, 60).unwrap();
        assert!(c.delete_session(&token).unwrap());
        assert_eq!(c.session_user(&token).unwrap(), None);

        // The last owner stays until there is another.
        assert!(matches!(
            c.remove_role("ana@shop.test", &p),
            Err(CatalogError::Conflict { .. })
        ));
        assert!(matches!(
            c.set_role("ana@shop.test", &p, Role::Admin),
            Err(CatalogError::Conflict { .. })
        ));
        c.create_user("bo@shop.test", "another password").unwrap();
        c.set_role("bo@shop.test", &p, Role::Owner).unwrap();
        assert!(c.remove_role("ana@shop.test", &p).unwrap());
        assert!(!c.remove_role("ana@shop.test", &p).unwrap());
        assert!(matches!(
            c.delete_user("bo@shop.test"),
            Err(CatalogError::Conflict { .. })
        ));
        assert!(c.delete_user("ana@shop.test").unwrap());
        assert_eq!(c.users().unwrap().len(), 1);
    }
}
