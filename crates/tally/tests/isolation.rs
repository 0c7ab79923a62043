//! Isolation between projects and key scopes against a real `tally serve`: every endpoint is
//! tried on one project's data with another project's keys (write, read, admin) and with the
//! web UI session of another project's owner (naming its own project, or the first one), with
//! the wrong scope, and with no key. Each attempt answers 401, 403 or 404 (or, for endpoints over "the
//! key's project", only that project's data), and nothing of the first project changes.

mod common;

use common::{Project, Server, client, create_project};
use serde_json::{Value, json};

/// A web UI session: its cookie, CSRF token and the project it names.
struct Session {
    cookie: String,
    csrf: String,
    project: String,
}

fn call(
    server: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    call_as(server, method, path, key, None, body)
}

fn call_as(
    server: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    session: Option<&Session>,
    body: Option<&Value>,
) -> (u16, String) {
    let url = format!("{}{path}", server.url);
    let mut r = match method {
        "GET" => client().get(url),
        "PUT" => client().put(url),
        "DELETE" => client().delete(url),
        _ => client().post(url),
    };
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(s) = session {
        r = r
            .header("cookie", &s.cookie)
            .header("x-csrf-token", &s.csrf)
            .header("x-tally-project", &s.project);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    let r = r.send().expect("request");
    let status = r.status().as_u16();
    (status, r.text().unwrap_or_default())
}

/// The first project's data: events of a person with a secret marker, a rule, a report, a
/// dashboard with a share link, a group.
struct Owned {
    rule: String,
    report: String,
    dashboard: String,
    widget: String,
    share: String,
    key_id: String,
}

const MARKER: &str = "only-in-project-a";

fn populate(server: &Server, a: &Project) -> Owned {
    let events = json!([
        {"event": "pageview", "user_id": "u1", "properties": {"note": MARKER},
         "context": {"page": {"url": format!("https://a.test/{MARKER}")}}},
        {"event": "signup", "user_id": "u1"}
    ]);
    assert_eq!(server.post("/v1/events", &a.write_key, &events).0, 200);
    let group = json!({"userId": "u1", "groupId": "acme", "traits": {"name": MARKER}});
    assert_eq!(server.post("/v1/group", &a.write_key, &group).0, 200);
    let rule = json!({"name": "pv", "event": "pageview", "measure": {"op": "count"}});
    assert!(matches!(
        server.post("/v1/rules", &a.read_key, &rule).0,
        200 | 201
    ));
    let report = json!({"title": MARKER, "time_range": "today",
        "sections": [{"title": "Events", "query": {"measure": {"op": "count"}}, "display": "number"}]});
    let (s, r) = server.post("/v1/reports", &a.read_key, &report);
    assert_eq!(s, 201, "{r}");
    let dash = json!({"name": MARKER, "widgets": [{"id": "w1", "title": "Events", "chart": "number",
                                                   "query": {"measure": {"op": "count"}}}]});
    let (s, d) = server.post("/v1/dashboards", &a.read_key, &dash);
    assert_eq!(s, 201, "{d}");
    let dashboard = d["id"].as_str().unwrap().to_owned();
    let (s, share) = server.post(
        &format!("/v1/dashboards/{dashboard}/shares"),
        &a.read_key,
        &json!({}),
    );
    assert_eq!(s, 201, "{share}");
    let (_, keys) = call(server, "GET", "/v1/keys", Some(&a.admin_key), None);
    let keys: Value = serde_json::from_str(&keys).unwrap();
    Owned {
        rule: "pv".into(),
        report: r["id"].as_str().unwrap().to_owned(),
        dashboard,
        widget: "w1".into(),
        share: share["id"].as_str().unwrap().to_owned(),
        key_id: keys["keys"][0]["id"].as_str().unwrap().to_owned(),
    }
}

#[test]
fn no_key_of_another_project_or_scope_reaches_a_projects_data() {
    let dir = tempfile::tempdir().unwrap();
    let a = create_project(dir.path(), "a");
    let b = create_project(dir.path(), "b");
    let server = Server::start(dir.path(), &[]);
    let o = populate(&server, &a);
    let range = json!({"from": "2020-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"});
    let query = json!({"time_range": range, "rules": [{"name": "n", "measure": {"op": "count"}}]});
    let widget = json!({"title": "x", "chart": "number", "query": {"measure": {"op": "count"}}});

    // Endpoints on the first project's objects, by id: (method, path, body).
    let by_id: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/v1/rules/{}", o.rule), None),
        ("DELETE", format!("/v1/rules/{}", o.rule), None),
        ("GET", format!("/v1/reports/{}", o.report), None),
        (
            "PUT",
            format!("/v1/reports/{}", o.report),
            Some(json!({"title": "x", "time_range": "today",
            "sections": [{"title": "E", "query": {"measure": {"op": "count"}}, "display": "number"}]})),
        ),
        ("DELETE", format!("/v1/reports/{}", o.report), None),
        ("POST", format!("/v1/reports/{}/run", o.report), None),
        ("POST", format!("/v1/reports/{}/send", o.report), None),
        ("GET", format!("/v1/reports/{}/runs", o.report), None),
        ("GET", format!("/v1/dashboards/{}", o.dashboard), None),
        (
            "PUT",
            format!("/v1/dashboards/{}", o.dashboard),
            Some(json!({"name": "x", "widgets": [widget.clone()]})),
        ),
        ("DELETE", format!("/v1/dashboards/{}", o.dashboard), None),
        (
            "POST",
            format!("/v1/dashboards/{}/widgets", o.dashboard),
            Some(widget.clone()),
        ),
        (
            "GET",
            format!("/v1/dashboards/{}/widgets/{}", o.dashboard, o.widget),
            None,
        ),
        (
            "GET",
            format!("/v1/dashboards/{}/shares", o.dashboard),
            None,
        ),
        (
            "POST",
            format!("/v1/dashboards/{}/shares", o.dashboard),
            Some(json!({})),
        ),
        (
            "DELETE",
            format!("/v1/dashboards/{}/shares/{}", o.dashboard, o.share),
            None,
        ),
        ("GET", "/v1/persons/u1".into(), None),
        ("GET", "/v1/persons/u1/export".into(), None),
        ("GET", "/v1/groups/company/acme".into(), None),
        ("DELETE", format!("/v1/keys/{}", o.key_id), None),
        (
            "PUT",
            format!("/v1/keys/{}", o.key_id),
            Some(json!({"rate_limit": 1})),
        ),
        ("POST", format!("/v1/keys/{}/rotate", o.key_id), None),
    ];
    // Endpoints over the key's own project.
    let own: Vec<(&str, &str, Option<Value>)> = vec![
        ("POST", "/v1/query", Some(query.clone())),
        (
            "POST",
            "/v1/sql",
            Some(json!({"sql": "SELECT * FROM events"})),
        ),
        ("GET", "/v1/rules", None),
        ("GET", "/v1/reports", None),
        ("GET", "/v1/dashboards", None),
        ("GET", "/v1/overview?range=past_90_days", None),
        (
            "POST",
            "/v1/charts?format=svg",
            Some(
                json!({"type": "number", "time_range": range, "query": {"name": "n", "measure": {"op": "count"}}}),
            ),
        ),
        (
            "POST",
            "/v1/widgets/preview",
            Some(
                json!({"title": "x", "chart": "number", "query": {"measure": {"op": "count"}}, "time_range": "past_90_days"}),
            ),
        ),
        ("GET", "/v1/keys", None),
        ("GET", "/v1/audit", None),
        ("GET", "/v1/members", None),
        ("GET", "/v1/retention", None),
        // Erases b's `u1`, whom b never had: a's stays (checked below).
        ("DELETE", "/v1/persons/u1", None),
    ];

    for key in [&b.write_key, &b.read_key, &b.admin_key] {
        for (method, path, body) in &by_id {
            let (status, text) = call(&server, method, path, Some(key), body.as_ref());
            assert!(
                matches!(status, 403 | 404),
                "{method} {path} with b's key: {status} {text}"
            );
            assert!(!text.contains(MARKER), "{method} {path}: {text}");
        }
        for (method, path, body) in &own {
            let (status, text) = call(&server, method, path, Some(key), body.as_ref());
            assert!(
                matches!(status, 200 | 201 | 403 | 404),
                "{method} {path} with b's key: {status} {text}"
            );
            assert!(
                !text.contains(MARKER) && !text.contains("\"u1\""),
                "{method} {path}: {text}"
            );
            if status == 200 && path.starts_with("/v1/query") {
                assert!(
                    text.contains("[[0]]"),
                    "b counts none of a's events: {text}"
                );
            }
        }
    }
    // The session of b's owner: naming b, it sees only b; naming a, it is refused.
    common::create_user(
        dir.path(),
        "owner@b.test",
        "b",
        "owner",
        "a long enough password",
    );
    let r = client()
        .post(format!("{}/v1/session", server.url))
        .json(&json!({"email": "owner@b.test", "password": "a long enough password"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let signed_in: Value = r.json().unwrap();
    let csrf = signed_in["csrf_token"].as_str().unwrap().to_owned();
    for project in [&b.id, &a.id] {
        let session = Session {
            cookie: cookie.clone(),
            csrf: csrf.clone(),
            project: project.clone(),
        };
        for (method, path, body) in by_id
            .iter()
            .map(|(m, p, b)| (*m, p.as_str(), b))
            .chain(own.iter().map(|(m, p, b)| (*m, *p, b)))
        {
            let (status, text) =
                call_as(&server, method, path, None, Some(&session), body.as_ref());
            let allowed: &[u16] =
                if project == &a.id || by_id.iter().any(|(m, p, _)| *m == method && p == path) {
                    &[403, 404]
                } else {
                    &[200, 201, 403, 404]
                };
            assert!(
                allowed.contains(&status),
                "{method} {path} with b's session naming {project}: {status} {text}"
            );
            assert!(
                !text.contains(MARKER) && !text.contains("\"u1\""),
                "{method} {path}: {text}"
            );
        }
    }
    // A made-up session: 401.
    let fake = Session {
        cookie: "tally_session=ts_madeup".into(),
        csrf: "x".into(),
        project: a.id.clone(),
    };
    for (method, path, body) in &own {
        let (status, text) = call_as(&server, method, path, None, Some(&fake), body.as_ref());
        assert!(
            matches!(status, 401 | 403),
            "{method} {path} with a made-up session: {status} {text}"
        );
    }

    // No key, or a made-up one: 401 everywhere.
    for (method, path, body) in by_id
        .iter()
        .map(|(m, p, b)| (*m, p.as_str(), b))
        .chain(own.iter().map(|(m, p, b)| (*m, *p, b)))
    {
        for key in [None, Some("tr_notakey")] {
            let (status, text) = call(&server, method, path, key, body.as_ref());
            assert_eq!(status, 401, "{method} {path} with {key:?}: {text}");
        }
    }
    // The wrong scope of the right project: 403.
    for (method, path, body) in [
        ("POST", "/v1/query", Some(query.clone())),
        ("GET", "/v1/dashboards", None),
    ] {
        assert_eq!(
            call(&server, method, path, Some(&a.write_key), body.as_ref()).0,
            403
        );
    }
    for path in ["/v1/keys", "/v1/persons/u1/export"] {
        assert_eq!(
            call(&server, "GET", path, Some(&a.read_key), None).0,
            403,
            "{path}"
        );
    }
    let (status, _) = server.post(
        "/v1/events",
        &a.read_key,
        &json!({"event": "e", "user_id": "x"}),
    );
    assert_eq!(status, 403);
    let (status, _) = server.post(
        "/v1/events",
        &b.admin_key,
        &json!({"event": "e", "user_id": "x"}),
    );
    assert_eq!(status, 403);

    // Nothing of the first project changed, and its own keys still see all of it.
    let (status, text) = call(
        &server,
        "GET",
        &format!("/v1/rules/{}", o.rule),
        Some(&a.read_key),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = call(
        &server,
        "GET",
        &format!("/v1/reports/{}", o.report),
        Some(&a.read_key),
        None,
    );
    assert!(status == 200 && text.contains(MARKER), "{text}");
    let (status, text) = call(
        &server,
        "GET",
        &format!("/v1/dashboards/{}", o.dashboard),
        Some(&a.read_key),
        None,
    );
    assert!(status == 200 && text.contains(MARKER), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["widgets"].as_array().unwrap().len(), 1);
    let (_, shares) = call(
        &server,
        "GET",
        &format!("/v1/dashboards/{}/shares", o.dashboard),
        Some(&a.read_key),
        None,
    );
    assert!(
        !shares.contains("revoked_at\":\"20"),
        "the share is not revoked: {shares}"
    );
    let (_, keys) = call(&server, "GET", "/v1/keys", Some(&a.admin_key), None);
    assert!(
        !keys.contains("revoked_at\":\"20"),
        "no key was revoked: {keys}"
    );
    let r = server.query(&a.read_key, &query);
    assert_eq!(r["n"]["rows"][0][0], 3, "{r}");
}
