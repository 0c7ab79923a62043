//! `POST /v1/sql`: read-only SQL over one project's events, within limits, never another's.

mod common;

use common::{Server, create_project};
use serde_json::{Value, json};

fn events(prefix: &str, n: usize) -> Value {
    json!((0..n)
        .map(|i| json!({"event": if i % 3 == 0 { "signup" } else { "pageview" }, "user_id": format!("{prefix}{}", i % 7),
                         "timestamp": "2026-10-01T12:00:00Z", "properties": {"n": i}}))
        .collect::<Vec<_>>())
}

#[test]
fn sql_sees_only_its_project_reads_only_and_keeps_limits() {
    let dir = tempfile::tempdir().unwrap();
    let a = create_project(dir.path(), "a");
    let b = create_project(dir.path(), "b");
    let mut server = Server::start(dir.path(), &["--sql-max-rows", "50"]);
    assert_eq!(
        server.post("/v1/events", &a.write_key, &events("a", 90)).0,
        200
    );
    assert_eq!(
        server.post("/v1/events", &b.write_key, &events("b", 30)).0,
        200
    );

    let sql = |key: &str, q: &str| server.post("/v1/sql", key, &json!({"sql": q}));
    let (s, v) = sql(
        &a.read_key,
        "SELECT event, count(*) AS n, count(DISTINCT person_id) AS persons FROM events GROUP BY event ORDER BY event",
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["columns"], json!(["event", "n", "persons"]));
    assert_eq!(v["rows"], json!([["pageview", 60, 7], ["signup", 30, 7]]));
    assert_eq!(v["truncated"], json!(false));
    let (_, v) = sql(
        &b.read_key,
        "SELECT count(*) AS n FROM events WHERE user_id LIKE 'a%'",
    );
    assert_eq!(v["rows"], json!([[0]]), "b never sees a's events");
    let (_, v) = sql(
        &a.read_key,
        "SELECT sum(json_get_int(properties, 'n')) AS total FROM events",
    );
    assert_eq!(v["rows"], json!([[(0..90).sum::<i64>()]]));

    // More rows than the limit: cut, and said so.
    let (_, v) = sql(&a.read_key, "SELECT person_id FROM events");
    assert_eq!(
        (v["rows"].as_array().unwrap().len(), v["truncated"].clone()),
        (50, json!(true))
    );
    let (_, v) = server.post(
        "/v1/sql",
        &a.read_key,
        &json!({"sql": "SELECT person_id FROM events", "max_rows": 5}),
    );
    assert_eq!(v["rows"].as_array().unwrap().len(), 5);

    // EXPLAIN shows the plan; EXPLAIN ANALYZE runs it and shows what each step did.
    let (s, v) = sql(&a.read_key, "EXPLAIN SELECT count(*) FROM events");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["columns"], json!(["plan_type", "plan"]));
    let (s, v) = sql(
        &a.read_key,
        "EXPLAIN ANALYZE SELECT event, count(*) FROM events GROUP BY event",
    );
    assert_eq!(s, 200, "{v}");
    let plan = v["rows"].to_string();
    assert!(plan.contains("output_rows"), "{plan}");

    // Nothing can be written, configured, or read from elsewhere.
    for q in [
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO events (event) VALUES ('x')",
        "DROP TABLE events",
        "COPY events TO '/tmp/tally-sql-test.parquet'",
        "SET datafusion.execution.batch_size = 1",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM other_table",
        "SELEC 1",
    ] {
        let (s, v) = sql(&a.read_key, q);
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("invalid_sql")),
            "{q}: {v}"
        );
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    assert!(!std::path::Path::new("/tmp/tally-sql-test.parquet").exists());
    let (s, v) = sql(&a.write_key, "SELECT 1");
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("wrong_key_scope"))
    );
    let (s, _) = server.post("/v1/sql", &a.read_key, &json!({"query": "SELECT 1"}));
    assert_eq!(s, 400);

    // A statement that needs more memory than allowed is stopped with 422.
    server.stop();
    let server = Server::start(dir.path(), &["--sql-memory-bytes", "1"]);
    let (s, v) = server.post(
        "/v1/sql",
        &a.read_key,
        &json!({"sql": "SELECT person_id, count(*) FROM events GROUP BY person_id ORDER BY 2"}),
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("resources_exhausted")),
        "{v}"
    );
}
