//! The official client libraries, installed from their registries by `tests/clients/setup.sh`
//! (which `scripts/test` runs), pointed at a real `tally serve`: every kind of call they make
//! must arrive, and `POST /v1/query` must give the exact counts and persons.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Project, Server, client, create_project};
use serde_json::{Value, json};

fn env_dir() -> PathBuf {
    common::test_env_dir()
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients")
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rows(server: &Server, p: &Project, rule: Value) -> Value {
    let q = json!({
        "time_range": {"from": "2026-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"},
        "rules": [rule],
    });
    server.query(&p.read_key, &q)["r"]["rows"].clone()
}

fn get(server: &Server, p: &Project, path: &str) -> Value {
    let r = client()
        .get(format!("{}{path}", server.url))
        .bearer_auth(&p.read_key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().unwrap()
}

/// Every call arrived once: the events by name (sorted) are `expected`.
fn assert_events_by_name(server: &Server, p: &Project, expected: &[(&str, i64)], who: &str) {
    let mut by_event: Vec<(String, i64)> = rows(
        server,
        p,
        json!({"name": "r", "measure": {"op": "count"}, "group_by": ["event"]}),
    )
    .as_array()
    .unwrap()
    .iter()
    .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
    .collect();
    by_event.sort();
    let expected: Vec<(String, i64)> = expected.iter().map(|(e, n)| (e.to_string(), *n)).collect();
    assert_eq!(by_event, expected, "{who}: events by name");
}

/// What both Segment scripts send, for persons named `{who}-anon`, `{who}-user`, `{who}-legacy`.
fn check_segment_calls(server: &Server, p: &Project, who: &str, plan: &str, revenue: f64) {
    assert_events_by_name(
        server,
        p,
        &[
            ("$alias", 1),
            ("$group", 1),
            ("$identify", 1),
            ("Order Completed", 2),
            ("Product Viewed", 1),
            ("pageview", 1),
            ("screen", 1),
        ],
        who,
    );
    // The anonymous visitor, the user and the legacy id are one person.
    assert_eq!(
        rows(
            server,
            p,
            json!({"name": "r", "measure": {"op": "unique_users"}})
        ),
        json!([[1]]),
        "{who}: persons"
    );
    assert_eq!(
        rows(
            server,
            p,
            json!({"name": "r", "event": "Order Completed", "measure": {"op": "sum", "property": "properties.revenue"}, "group_by": ["person_id"]})
        ),
        json!([[format!("{who}-user"), revenue]]),
        "{who}: revenue per person"
    );
    let person = get(server, p, &format!("/v1/persons/{who}-anon"));
    assert_eq!(person["id"], format!("{who}-user"));
    assert_eq!(
        person["distinct_ids"],
        json!([
            format!("{who}-user"),
            format!("{who}-anon"),
            format!("{who}-legacy")
        ])
    );
    assert_eq!(person["properties"]["plan"], plan);
    let group = get(server, p, &format!("/v1/groups/group/{who}-company"));
    assert!(group["properties"]["seats"].is_number(), "{group}");
}

#[test]
fn segment_python_library() {
    let env = env_dir();
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "py");
    let server = Server::start(dir.path(), &[]);
    let mut cmd = Command::new(env.join("py/bin/python"));
    cmd.arg(clients_dir().join("segment_python.py"))
        .arg(&server.url)
        .arg(&p.write_key);
    run(cmd, "segment_python.py");
    check_segment_calls(&server, &p, "py", "pro", 50.0);
    // The page call's context: path, referrer, browser, the library.
    assert_eq!(
        rows(
            &server,
            &p,
            json!({"name": "r", "event": "pageview", "measure": {"op": "count"},
                   "group_by": ["path", "referrer_host", "browser", "library"]})
        ),
        json!([[
            "/pricing",
            "news.example",
            "Firefox",
            "analytics-python 2.4.0",
            1
        ]])
    );
}

#[test]
fn segment_node_library() {
    let env = env_dir();
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "node");
    let server = Server::start(dir.path(), &[]);
    // ES modules resolve packages from the script's folder upwards: run a copy placed beside
    // the installed modules.
    let copy = env.join("node/segment_node.mjs");
    std::fs::copy(clients_dir().join("segment_node.mjs"), &copy).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(&copy).arg(&server.url).arg(&p.write_key);
    run(cmd, "segment_node.mjs");
    check_segment_calls(&server, &p, "node", "team", 25.0);
    let lib = rows(
        &server,
        &p,
        json!({"name": "r", "event": "pageview", "measure": {"op": "count"}, "group_by": ["path", "browser", "library"]}),
    );
    assert_eq!(lib[0][0], "/");
    assert_eq!(lib[0][1], "Safari");
    assert!(
        lib[0][2]
            .as_str()
            .is_some_and(|l| l.starts_with("@segment/analytics-node")),
        "{lib}"
    );
}

#[test]
fn posthog_python_library() {
    let env = env_dir();
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "ph");
    let server = Server::start(dir.path(), &[]);
    let mut cmd = Command::new(env.join("py/bin/python"));
    cmd.arg(clients_dir().join("posthog_python.py"))
        .arg(&server.url)
        .arg(&p.write_key);
    run(cmd, "posthog_python.py");
    assert_events_by_name(
        &server,
        &p,
        &[
            ("$create_alias", 1),
            ("$groupidentify", 1),
            ("$identify", 1),
            ("$set", 1),
            ("$set_once", 1),
            ("Order Completed", 2),
            ("Product Viewed", 1),
            ("pageview", 1),
        ],
        "posthog",
    );
    // ph-anon, ph-user and ph-legacy are one person, whose id is the alias event's distinct_id.
    assert_eq!(
        rows(
            &server,
            &p,
            json!({"name": "r", "measure": {"op": "unique_users"}})
        ),
        json!([[1]])
    );
    assert_eq!(
        rows(
            &server,
            &p,
            json!({"name": "r", "event": "Order Completed", "measure": {"op": "sum", "property": "properties.revenue"}, "group_by": ["person_id"]})
        ),
        json!([["ph-user", 15.0]])
    );
    let person = get(&server, &p, "/v1/persons/ph-anon");
    assert_eq!(person["id"], "ph-user");
    assert_eq!(
        person["distinct_ids"],
        json!(["ph-user", "ph-anon", "ph-legacy"])
    );
    assert_eq!(
        person["properties"],
        json!({"plan": "scale", "name": "Ph", "first_seen": "today"})
    );
    let group = get(&server, &p, "/v1/groups/company/ph-company");
    assert_eq!(group["properties"], json!({"seats": 4}));
    assert_eq!(
        rows(
            &server,
            &p,
            json!({"name": "r", "event": "pageview", "measure": {"op": "count"},
                   "group_by": ["path", "title", "utm_source", "referrer_channel", "library"]})
        )[0]
        .as_array()
        .unwrap()[..4],
        json!(["/docs", "Docs", "newsletter", "email"])
            .as_array()
            .unwrap()[..]
    );
    // A group-by on the `$groups` property PostHog's events carry.
    assert_eq!(
        rows(
            &server,
            &p,
            json!({"name": "r", "event": "Order Completed", "measure": {"op": "count"},
                   "group_by": ["properties.$groups.company"]})
        ),
        json!([[null, 1], ["ph-company", 1]])
    );
}
