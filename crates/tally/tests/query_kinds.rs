//! Sessions, paths, stickiness and lifecycle over HTTP and the CLI: the events of their golden
//! cases go to a real `tally serve` over `POST /v1/events`, and `POST /v1/query` and
//! `tally query` must both give the golden answers.

mod common;

use common::{BIN, Server, create_project, golden_case, same_json};
use serde_json::{Value, json};

const CASES: &[&str] = &[
    "sessions",
    "paths",
    "stickiness_lifecycle_dst",
    "empty_range_kinds",
];

#[test]
fn every_new_kind_over_http_and_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected_all = Vec::new();
    // One project per case: the cases reuse person names.
    let mut projects = Vec::new();
    for name in CASES {
        projects.push(create_project(dir.path(), &name.replace('_', "-")));
    }
    let mut server = Server::start(dir.path(), &[]);
    for (name, project) in CASES.iter().zip(&projects) {
        let case = golden_case(name);
        for key in ["events", "late_events"] {
            if let Some(events) = case.get(key) {
                let (status, v) = server.post("/v1/events", &project.write_key, events);
                assert_eq!(status, 200, "{name} {key}: {v}");
                assert_eq!(v["accepted"], events.as_array().unwrap().len(), "{v}");
            }
        }
        expected_all.push(case);
    }
    for ((name, project), case) in CASES.iter().zip(&projects).zip(&expected_all) {
        let got = server.query(&project.read_key, &case["query"]);
        assert!(
            same_json(&got, &case["expected"]),
            "{name} over HTTP:\n got      {got}\n expected {}",
            case["expected"]
        );
    }
    // The CLI reads the same data directory beside the running server, then after it stopped.
    for phase in ["beside the server", "after a stop"] {
        if phase == "after a stop" {
            server.stop();
        }
        for ((name, project), case) in CASES.iter().zip(&projects).zip(&expected_all) {
            let file = dir.path().join(format!("{name}.json"));
            std::fs::write(&file, case["query"].to_string()).unwrap();
            let out = std::process::Command::new(BIN)
                .args(["query", "--json", "--project", &project.name, "--rules"])
                .arg(&file)
                .arg("--data-dir")
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(
                same_json(&v["results"], &case["expected"]),
                "{name} with the CLI {phase}:\n got      {}\n expected {}",
                v["results"],
                case["expected"]
            );
        }
    }
}

#[test]
fn bad_queries_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let project = create_project(dir.path(), "shop");
    let server = Server::start(dir.path(), &[]);
    let range = json!({"from": "2026-10-01T00:00:00Z", "to": "2026-10-02T00:00:00Z"});
    for (rule, field, code) in [
        (
            json!({"kind": "paths", "name": "p", "anchor": {}}),
            "rules[0].anchor",
            "invalid_anchor",
        ),
        (
            json!({"kind": "paths", "name": "p", "anchor": {"page": "/"}, "steps": 6}),
            "rules[0].steps",
            "invalid_steps",
        ),
        (
            json!({"kind": "paths", "name": "p", "anchor": {"event": "signup", "page": "/"}}),
            "rules[0].anchor.event",
            "invalid_anchor",
        ),
        (
            json!({"kind": "sessions", "name": "s", "breakdown": "nope.x"}),
            "rules[0].breakdown",
            "invalid_field",
        ),
        (
            json!({"kind": "lifecycle", "name": "l", "interval": "minute", "event": "x"}),
            "rules[0].interval",
            "too_many_buckets",
        ),
    ] {
        let range = if field.ends_with("interval") {
            json!({"from": "2026-01-01T00:00:00Z", "to": "2026-10-02T00:00:00Z"})
        } else {
            range.clone()
        };
        let (status, v) = server.post(
            "/v1/query",
            &project.read_key,
            &json!({"time_range": range, "rules": [rule]}),
        );
        assert_eq!(status, 400, "{rule}: {v}");
        assert_eq!(v["error"]["field"], field, "{rule}: {v}");
        assert_eq!(v["error"]["code"], code, "{rule}: {v}");
    }
    // Every item is checked before any runs; the error names the bad one.
    let (status, v) = server.post(
        "/v1/query",
        &project.read_key,
        &json!({"time_range": range, "rules": [
            {"kind": "sessions", "name": "s"},
            {"kind": "stickiness", "name": "t", "event": "login"},
            {"kind": "paths", "name": "p", "anchor": {}},
        ]}),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["field"], "rules[2].anchor", "{v}");
    let (status, v) = server.post(
        "/v1/query",
        &project.read_key,
        &json!({"time_range": range, "rules": [{"kind": "paths", "name": "p", "anchor": {"page": "/"}, "direction": "sideways"}]}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("direction"),
        "{v}"
    );
}
