//! Identity merging golden cases (`tests/golden/identity/*.json`): each case is a list of steps
//! run in order against a real `tally serve`. A `send` step posts its `body` to an ingest
//! endpoint (Tally's own or Segment's) with the write key; a `query` step compares
//! `POST /v1/query` with `expected`; a `person` step compares `GET /v1/persons/{id}`.
//!
//! With `TALLY_BLESS=1` the answers are written into the files instead (review the diff).

mod common;

use std::path::PathBuf;

use common::{Server, client, create_project, same_json};
use serde_json::{Value, json};

fn cases() -> Vec<(String, PathBuf)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/identity");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("tests/golden/identity")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    assert!(!out.is_empty());
    out
}

/// The person as the case compares it: timestamps left out.
fn person_view(v: &Value) -> Value {
    json!({
        "id": v["id"],
        "distinct_ids": v["distinct_ids"],
        "properties": v["properties"],
        "identified": v["identified"],
    })
}

#[test]
fn identity_golden_cases() {
    let bless = std::env::var("TALLY_BLESS").is_ok_and(|v| v == "1");
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let projects: Vec<_> = cases
        .iter()
        .map(|(name, _)| create_project(dir.path(), &name.replace('_', "-")))
        .collect();
    let server = Server::start(dir.path(), &[]);
    let http = client();
    for ((name, path), project) in cases.iter().zip(&projects) {
        let mut case: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let steps = case["steps"].as_array_mut().unwrap();
        for (i, step) in steps.iter_mut().enumerate() {
            if let Some(endpoint) = step["send"].as_str() {
                let (status, v) = server.post(endpoint, &project.write_key, &step["body"]);
                assert_eq!(status, 200, "{name} step {i} ({endpoint}): {v}");
                assert!(v["rejected"].as_array().is_none_or(Vec::is_empty), "{v}");
                continue;
            }
            let got = if let Some(q) = step.get("query") {
                server.query(&project.read_key, q)
            } else if let Some(id) = step["person"].as_str() {
                let r = http
                    .get(format!("{}/v1/persons/{id}", server.url))
                    .bearer_auth(&project.read_key)
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200, "{name} step {i}: person {id}");
                person_view(&r.json().unwrap())
            } else {
                panic!("{name} step {i}: a step sends, queries or reads a person");
            };
            if bless {
                step["expected"] = got;
            } else {
                assert!(
                    same_json(&got, &step["expected"]),
                    "{name} step {i}:\n got      {got}\n expected {}",
                    step["expected"]
                );
            }
        }
        if bless {
            std::fs::write(path, serde_json::to_string_pretty(&case).unwrap() + "\n").unwrap();
        }
    }
}

/// A saved `unique_users` rule answers from its rollup until persons merge; after that the raw
/// events answer, and count the merged person once.
#[test]
fn a_saved_unique_rule_counts_a_merged_person_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let server = Server::start(dir.path(), &[]);
    let rule = json!({"name": "persons", "measure": {"op": "unique_users"}, "interval": "day"});
    let (s, v) = server.post("/v1/rules", &p.read_key, &rule);
    assert!(s == 200 || s == 201, "{v}");
    let events = json!([
        {"event": "pageview", "anonymous_id": "a1", "timestamp": "2026-10-01T10:00:00Z"},
        {"event": "login", "user_id": "u1", "timestamp": "2026-10-01T11:00:00Z"},
    ]);
    assert_eq!(server.post("/v1/events", &p.write_key, &events).0, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let body = json!({"time_range": {"from": "2026-10-01T00:00:00Z", "to": "2026-10-02T00:00:00Z"},
                      "rules": [rule]});
    loop {
        let (_, v) = server.post("/v1/query", &p.read_key, &body);
        if v["from_rollups"] == json!(["persons"]) {
            assert_eq!(
                v["results"]["persons"]["rows"],
                json!([["2026-10-01T00:00:00Z", 2]])
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rollup: {v}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A rule over person properties is saved, and computed from raw events (properties change).
    let by_plan =
        json!({"name": "by_plan", "measure": {"op": "count"}, "group_by": ["person.plan"]});
    let (s, v) = server.post("/v1/rules", &p.read_key, &by_plan);
    assert!(s == 200 || s == 201, "{v}");
    let r = client()
        .get(format!("{}/v1/rules/by_plan", server.url))
        .bearer_auth(&p.read_key)
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["rollup"]["state"], "unsupported", "{v}");

    let identify = json!({"userId": "u1", "anonymousId": "a1"});
    assert_eq!(server.post("/v1/identify", &p.write_key, &identify).0, 200);
    let (_, v) = server.post("/v1/query", &p.read_key, &body);
    assert!(v.get("from_rollups").is_none(), "{v}");
    assert_eq!(
        v["results"]["persons"]["rows"],
        json!([["2026-10-01T00:00:00Z", 1]])
    );
    // The SQL endpoint sees the merged person too.
    let sql = json!({"sql": "SELECT count(DISTINCT person_id) AS n, min(person_id) AS p FROM events WHERE event <> '$identify'"});
    let (s, v) = server.post("/v1/sql", &p.read_key, &sql);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rows"], json!([[1, "u1"]]));
}
