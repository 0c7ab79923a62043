//! Accounts against a real `tally serve`: users created with `tally users` (and the first owner
//! from `--owner-email`), sign-in with an Argon2id-checked password, the session cookie's
//! flags, CSRF protection, roles (viewer, admin, owner) mapped onto what keys may do, members
//! managed by owners, sign-out and password changes ending sessions, sign-in throttling, and
//! sessions that never reach another project.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Project, Server, client, create_project, tally};
use reqwest::blocking::Response;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

fn create_user(data: &Path, email: &str, project: &str, role: &str) {
    common::create_user(data, email, project, role, PASSWORD);
}

/// A signed-in browser, as far as the server can tell: the cookie and the CSRF token.
struct Session {
    cookie: String,
    csrf: String,
    body: Value,
}

fn sign_in(server: &Server, email: &str, password: &str) -> Response {
    client()
        .post(format!("{}/v1/session", server.url))
        .json(&json!({"email": email, "password": password}))
        .send()
        .unwrap()
}

fn session(server: &Server, email: &str) -> Session {
    let r = sign_in(server, email, PASSWORD);
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let body: Value = r.json().unwrap();
    Session {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        body,
    }
}

/// Requests as a signed-in browser sends them: the session's cookie, the project it names
/// and (unless `None`) a CSRF token.
#[derive(Clone, Copy)]
struct Call<'a> {
    server: &'a Server,
    cookie: &'a str,
    project: Option<&'a Project>,
    csrf: Option<&'a str>,
}

fn as_user<'a>(server: &'a Server, s: &'a Session, project: Option<&'a Project>) -> Call<'a> {
    Call {
        server,
        cookie: &s.cookie,
        project,
        csrf: Some(&s.csrf),
    }
}

impl Call<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = client()
            .request(method, format!("{}{path}", self.server.url))
            .header("cookie", self.cookie);
        if let Some(p) = self.project {
            req = req.header("x-tally-project", &p.id);
        }
        if let Some(t) = self.csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(method, path, Some(body))
    }
}

/// The status and the error code of an answer.
fn code((status, body): (u16, Value)) -> (u16, String) {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

fn query() -> Value {
    json!({"time_range": {"from": "2026-10-01T00:00:00Z", "to": "2026-10-02T00:00:00Z"},
           "rules": [{"name": "n"}]})
}

#[test]
fn users_sign_in_and_their_roles_decide_what_they_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let shop = create_project(data, "shop");
    let other = create_project(data, "other");
    let fresh = create_project(data, "fresh");
    create_user(data, "ana@shop.test", "shop", "owner");
    create_user(data, "vic@shop.test", "shop", "viewer");
    create_user(data, "oz@other.test", "other", "owner");
    // The CLI checks what it is given.
    let (ok, _, err) = tally(
        &["users", "create", "x@shop.test", "--password-stdin"],
        data,
    );
    assert!(!ok && err.contains("no password"), "{err}");
    let (ok, _, err) = tally(
        &[
            "users",
            "grant",
            "ana@shop.test",
            "--project",
            "shop",
            "--role",
            "king",
        ],
        data,
    );
    assert!(!ok && err.contains("viewer, admin or owner"), "{err}");

    // The first owner from the environment: owner of the project without one.
    let server = Server::start_with_env(
        data,
        &["--owner-email", "boss@fresh.test"],
        &[("TALLY_OWNER_PASSWORD", PASSWORD)],
    );
    let (ok, out, _) = tally(&["users", "list"], data);
    assert!(ok);
    let users: Value = serde_json::from_str(&out).unwrap();
    let boss = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "boss@fresh.test")
        .unwrap();
    assert_eq!(
        boss["projects"],
        json!([{"project_id": fresh.id, "project_name": "fresh", "role": "owner"}])
    );
    assert!(!out.contains(PASSWORD) && !out.contains("argon2"), "{out}");

    // Sign-in: one answer for a wrong password and an unknown email; JSON only.
    for (email, password) in [
        ("ana@shop.test", "wrong password!"),
        ("nobody@shop.test", PASSWORD),
    ] {
        let r = sign_in(&server, email, password);
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("set-cookie").is_none());
        let v: Value = r.json().unwrap();
        assert_eq!(v["error"]["code"], "invalid_credentials", "{v}");
    }
    let r = client()
        .post(format!("{}/v1/session", server.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=ana%40shop.test&password=correct+horse+battery")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);

    let r = sign_in(&server, "ANA@shop.test", PASSWORD);
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in [
        "tally_session=ts_",
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/",
        "Max-Age=604800",
    ] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    let ana = session(&server, "ana@shop.test");
    assert_eq!(ana.body["user"]["email"], "ana@shop.test");
    assert_eq!(
        ana.body["projects"],
        json!([{"id": shop.id, "name": "shop", "role": "owner"}])
    );
    let (s, me) = as_user(&server, &ana, None).get("/v1/session");
    assert_eq!(s, 200);
    assert_eq!(me["csrf_token"], ana.csrf.as_str());

    // A signed-in request names its project; changes need the CSRF token.
    let ana_shop = as_user(&server, &ana, Some(&shop));
    let (s, v) = ana_shop.get("/v1/project");
    assert_eq!((s, v["scope"].as_str()), (200, Some("admin")), "{v}");
    assert_eq!(ana_shop.send("POST", "/v1/query", query()).0, 200);
    let no_csrf = Call {
        csrf: None,
        ..ana_shop
    };
    assert_eq!(
        code(no_csrf.send("POST", "/v1/query", query())),
        (403, "csrf_failed".into())
    );
    let zeros = "0".repeat(64);
    let forged = Call {
        csrf: Some(&zeros),
        ..ana_shop
    };
    assert_eq!(
        code(forged.send("POST", "/v1/query", query())),
        (403, "csrf_failed".into())
    );
    let nowhere = as_user(&server, &ana, None);
    assert_eq!(
        code(nowhere.get("/v1/rules")),
        (400, "missing_project".into())
    );
    let elsewhere = as_user(&server, &ana, Some(&other));
    assert_eq!(
        code(elsewhere.get("/v1/rules")),
        (403, "not_a_member".into())
    );
    // Sessions never ingest: that is what write keys are for.
    let event = json!({"event": "x", "user_id": "u"});
    assert_eq!(
        code(ana_shop.send("POST", "/v1/events", event)),
        (403, "wrong_key_scope".into())
    );

    // A viewer reads and manages nothing.
    let vic = session(&server, "vic@shop.test");
    let vic_shop = as_user(&server, &vic, Some(&shop));
    assert_eq!(vic_shop.send("POST", "/v1/query", query()).0, 200);
    for (method, path) in [
        ("GET", "/v1/keys"),
        ("DELETE", "/v1/persons/p1"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/members"),
    ] {
        let got = code(vic_shop.call(method, path, None));
        assert_eq!(got, (403, "wrong_key_scope".into()), "{path}");
    }

    // Owners manage members; an admin may not; the last owner stays.
    let role = |r: &str| json!({"role": r});
    assert_eq!(
        ana_shop
            .send("PUT", "/v1/members/vic@shop.test", role("admin"))
            .0,
        200
    );
    assert_eq!(vic_shop.get("/v1/keys").0, 200);
    let got = vic_shop.send("PUT", "/v1/members/vic@shop.test", role("owner"));
    assert_eq!(code(got), (403, "owner_only".into()));
    let got = ana_shop.call("DELETE", "/v1/members/ana@shop.test", None);
    assert_eq!(code(got), (409, "last_owner".into()));
    let got = ana_shop.send("PUT", "/v1/members/ana@shop.test", role("viewer"));
    assert_eq!(code(got), (409, "last_owner".into()));
    let got = ana_shop.send("PUT", "/v1/members/ghost@shop.test", role("viewer"));
    assert_eq!(code(got), (404, "user_not_found".into()));
    let (s, v) = ana_shop.send("PUT", "/v1/members/vic@shop.test", role("emperor"));
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("role")),
        "{v}"
    );
    let (s, members) = ana_shop.get("/v1/members");
    assert_eq!(s, 200);
    let roles: Vec<(&str, &str)> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [("ana@shop.test", "owner"), ("vic@shop.test", "admin")]
    );
    // Neither the admin key nor an admin's session manages members, nor may an admin's
    // session mint keys (which would outlive its role); an owner's may.
    let r = client()
        .delete(format!("{}/v1/members/vic@shop.test", server.url))
        .bearer_auth(&shop.admin_key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let got = vic_shop.send("POST", "/v1/keys", json!({"scope": "admin"}));
    assert_eq!(code(got), (403, "owner_only".into()));
    let (s, key) = ana_shop.send("POST", "/v1/keys", json!({"scope": "read"}));
    assert_eq!(s, 201, "{key}");
    let got = ana_shop.call("DELETE", "/v1/members/vic@shop.test", None);
    assert_eq!(got.0, 204);
    assert_eq!(vic_shop.get("/v1/rules").0, 403);

    // Sign-out ends the session on the server, not only in the browser.
    let got = Call {
        csrf: None,
        ..nowhere
    }
    .call("DELETE", "/v1/session", None);
    assert_eq!(
        code(got),
        (403, "csrf_failed".into()),
        "sign-out needs the CSRF token too"
    );
    let r = client()
        .delete(format!("{}/v1/session", server.url))
        .header("cookie", &ana.cookie)
        .header("x-csrf-token", &ana.csrf)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        code(ana_shop.get("/v1/rules")),
        (401, "invalid_session".into())
    );

    // A new password ends every session of the user.
    let oz = session(&server, "oz@other.test");
    let oz_other = as_user(&server, &oz, Some(&other));
    assert_eq!(oz_other.get("/v1/rules").0, 200);
    let out = Command::new(BIN)
        .args([
            "users",
            "passwd",
            "oz@other.test",
            "--password-stdin",
            "--data-dir",
        ])
        .arg(data)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"a new long password\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    assert_eq!(oz_other.get("/v1/rules").0, 401);
    assert_eq!(
        sign_in(&server, "oz@other.test", "a new long password").status(),
        200
    );
}

#[test]
fn password_guessing_is_throttled() {
    let dir = tempfile::tempdir().unwrap();
    create_project(dir.path(), "shop");
    create_user(dir.path(), "ana@shop.test", "shop", "owner");
    let server = Server::start(dir.path(), &[]);
    for i in 0..10 {
        assert_eq!(
            sign_in(&server, "ana@shop.test", &format!("guess number {i}")).status(),
            401
        );
    }
    // Even the right password now waits.
    let r = sign_in(&server, "ana@shop.test", PASSWORD);
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 900);
    // Another user is not locked out by it.
    create_user(dir.path(), "ben@shop.test", "shop", "viewer");
    assert_eq!(sign_in(&server, "ben@shop.test", PASSWORD).status(), 200);
    // Guessing across many accounts from one address: 100 sign-ins per 15 minutes, then 429
    // for any email (11 count from above: a good sign-in gives its one back).
    let refused = (0..100).find_map(|i| {
        let r = sign_in(&server, &format!("u{i}@shop.test"), "some guess or other");
        (r.status() == 429).then(|| (i, r.json::<Value>().unwrap()))
    });
    let (after, v) = refused.expect("the address was throttled");
    assert_eq!(after, 89, "{v}");
    assert_eq!(v["error"]["code"], "too_many_attempts", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this address"),
        "{v}"
    );
}
