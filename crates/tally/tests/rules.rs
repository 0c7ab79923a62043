//! Saved rules over HTTP and the CLI: each is kept live as a rollup, which answers matching
//! queries with exactly what the raw events give, before and after a crash.

mod common;

use std::time::{Duration, Instant};

use common::{BIN, Server, client, create_project};
use serde_json::{Value, json};

fn events(n: usize, day: u32) -> Value {
    json!((0..n)
        .map(|i| json!({
            "event": if i % 4 == 0 { "purchase" } else { "pageview" },
            "user_id": format!("u{}", i % 23),
            "timestamp": format!("2026-10-{day:02}T{:02}:{:02}:00Z", i % 24, i % 60),
            "properties": {"plan": if i % 3 == 0 { "pro" } else { "free" }, "amount": (i % 10) as f64},
        }))
        .collect::<Vec<_>>())
}

fn get(server: &Server, path: &str, key: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{}{path}", server.url))
        .bearer_auth(key)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// Runs `tally ARGS --data-dir DIR`.
fn tally(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn wait_ready(server: &Server, key: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = get(server, &format!("/v1/rules/{name}"), key);
        if s == 200 && v["rollup"]["state"] == "ready" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rule {name} never got ready: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rules() -> Vec<Value> {
    vec![
        json!({"name": "pv", "event": "pageview", "measure": {"op": "count"}, "interval": "day"}),
        json!({"name": "buyers", "event": "purchase", "measure": {"op": "unique_users"},
               "group_by": ["properties.plan"]}),
        json!({"name": "revenue", "event": "purchase",
               "measure": {"op": "sum", "property": "properties.amount"},
               "filters": [["properties.plan", "eq", "pro"]], "interval": "hour"}),
    ]
}

/// Queries the rules (under other names: a rollup matches by what a rule computes) with and
/// without rollups, and checks both answers agree and that the rollups answered.
fn check_rollups_answer(server: &Server, key: &str, timezone: &str) {
    let renamed: Vec<Value> = rules()
        .into_iter()
        .map(|mut r| {
            r["name"] = json!(format!("q_{}", r["name"].as_str().unwrap()));
            r
        })
        .collect();
    let body = json!({"time_range": {"from": "2026-09-28T00:00:00Z", "to": "2026-10-10T00:00:00Z",
                                      "timezone": timezone}, "rules": renamed});
    let (s, rolled) = server.post("/v1/query", key, &body);
    assert_eq!(s, 200, "{rolled}");
    let mut exact_body = body.clone();
    exact_body["exact"] = json!(true);
    let (_, exact) = server.post("/v1/query", key, &exact_body);
    assert_eq!(rolled["results"], exact["results"]);
    assert_eq!(
        rolled["from_rollups"],
        json!(["q_pv", "q_buyers", "q_revenue"]),
        "{rolled}"
    );
    assert!(exact.get("from_rollups").is_none());
}

#[test]
fn saved_rules_are_live_rollups_that_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let mut server = Server::start(dir.path(), &["--flush-rows", "300"]);
    assert_eq!(
        server.post("/v1/events", &p.write_key, &events(500, 1)).0,
        200
    );

    for r in rules() {
        let (s, v) = server.post("/v1/rules", &p.read_key, &r);
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["name"], r["name"]);
    }
    for r in rules() {
        wait_ready(&server, &p.read_key, r["name"].as_str().unwrap());
    }
    // Saving again replaces (200); a write key may not manage rules.
    assert_eq!(server.post("/v1/rules", &p.read_key, &rules()[0]).0, 200);
    assert_eq!(server.post("/v1/rules", &p.write_key, &rules()[0]).0, 403);
    wait_ready(&server, &p.read_key, "pv");

    // Events after the rollups were built, some late (days before), are in them at once.
    assert_eq!(
        server.post("/v1/events", &p.write_key, &events(300, 3)).0,
        200
    );
    assert_eq!(
        server.post("/v1/events", &p.write_key, &events(50, 1)).0,
        200
    );
    check_rollups_answer(&server, &p.read_key, "UTC");
    check_rollups_answer(&server, &p.read_key, "Europe/Berlin");

    // A crash: the rollups come back (snapshot + WAL replay) and still agree.
    server.restart_after_kill9();
    for r in rules() {
        wait_ready(&server, &p.read_key, r["name"].as_str().unwrap());
    }
    assert_eq!(
        server.post("/v1/events", &p.write_key, &events(120, 5)).0,
        200
    );
    check_rollups_answer(&server, &p.read_key, "UTC");

    let (s, v) = get(&server, "/v1/rules", &p.read_key);
    assert_eq!(s, 200);
    let names: Vec<&str> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["buyers", "pv", "revenue"]);

    // Delete: gone from the list, and queries use the raw events again.
    let r = client()
        .delete(format!("{}/v1/rules/pv", server.url))
        .bearer_auth(&p.read_key)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(get(&server, "/v1/rules/pv", &p.read_key).0, 404);
    let body = json!({"time_range": {"from": "2026-09-28T00:00:00Z", "to": "2026-10-10T00:00:00Z"},
                      "rules": [rules()[0]]});
    let (_, v) = server.post("/v1/query", &p.read_key, &body);
    assert!(v.get("from_rollups").is_none(), "{v}");
}

#[test]
fn rules_cli_and_bad_rules() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        server.post("/v1/events", &p.write_key, &events(100, 2)).0,
        200
    );

    // The CLI saves into the same data directory; the running server builds the rollup.
    let file = dir.path().join("rule.json");
    std::fs::write(&file, rules()[1].to_string()).unwrap();
    let out = tally(dir.path(), &["rules", "create", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_ready(&server, &p.read_key, "buyers");
    let out = tally(dir.path(), &["rules", "list", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rules"][0]["name"], "buyers");

    // A bad rule: 400 naming the field; the CLI says what is wrong and exits non-zero.
    let (s, v) = server.post(
        "/v1/rules",
        &p.read_key,
        &json!({"name": "x", "measure": {"op": "sum"}}),
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["field"], "rule.measure.property");
    std::fs::write(
        &file,
        r#"{"name": "x", "filters": [["event", "like", "a"]]}"#,
    )
    .unwrap();
    let out = tally(dir.path(), &["rules", "create", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown operator"));

    // Percentiles cannot be rolled up: saved, shown as unsupported, computed from raw events.
    let (s, v) = server.post(
        "/v1/rules",
        &p.read_key,
        &json!({"name": "p95", "measure": {"op": "p95", "property": "properties.amount"}}),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["rollup"]["state"], "unsupported");

    let out = tally(dir.path(), &["rules", "delete", "buyers"]);
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&server, "/v1/rules/buyers", &p.read_key).0 != 404 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
}
