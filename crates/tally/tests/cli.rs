//! The command line: projects with and without a running server, schemas, `tally query` beside a
//! running server, and `tally import`.

mod common;

use std::io::Write;

use common::{Server, create_project, tally};
use serde_json::{Value, json};

const QUERY: &str = r#"{"time_range": {"from": "2026-07-01T00:00:00Z", "to": "2026-07-03T00:00:00Z"},
  "rules": [{"name": "per_day", "measure": {"op": "count"}, "interval": "day"},
            {"name": "revenue", "event": "purchase", "measure": {"op": "sum", "property": "properties.amount"}}]}"#;

fn query_json(dir: &std::path::Path, project: &str, rules: &std::path::Path) -> Value {
    let (ok, out, err) = tally(
        &[
            "query",
            "--project",
            project,
            "--json",
            "--rules",
            rules.to_str().unwrap(),
        ],
        dir,
    );
    assert!(ok, "tally query failed: {err}");
    serde_json::from_str::<Value>(&out).unwrap()["results"].clone()
}

#[test]
fn projects_schemas_query_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rules = dir.path().join("rules.json");
    std::fs::write(&rules, QUERY).unwrap();

    // Without a server.
    let a = create_project(&data, "alpha");
    assert!(
        a.id.starts_with('p') && a.write_key.starts_with("tw_") && a.read_key.starts_with("tr_")
    );
    let (ok, _, err) = tally(&["project", "create", "alpha", "--json"], &data);
    assert!(!ok && err.contains("already exists"), "{err}");
    let schema = dir.path().join("purchase.json");
    std::fs::write(&schema, r#"{"event": "purchase", "fields": [{"name": "amount", "type": "float", "required": true}]}"#).unwrap();
    let (ok, _, err) = tally(
        &[
            "schemas",
            "put",
            "--project",
            "alpha",
            schema.to_str().unwrap(),
        ],
        &data,
    );
    assert!(ok, "{err}");

    // Bulk import, with a bad line and a schema violation among good lines.
    let file = dir.path().join("events.ndjson.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&file).unwrap(),
        flate2::Compression::fast(),
    );
    for i in 0..3000 {
        let day = 1 + i % 2;
        writeln!(gz, r#"{{"event": "purchase", "user_id": "u{}", "timestamp": "2026-07-0{day}T10:00:00Z", "properties": {{"amount": 2.5}}, "message_id": "imp-{i}"}}"#, i % 7).unwrap();
    }
    writeln!(gz, "this is not json").unwrap();
    writeln!(gz, r#"{{"event": "purchase", "user_id": "u1", "timestamp": "2026-07-01T10:00:00Z", "properties": {{"amount": "lots"}}}}"#).unwrap();
    gz.finish().unwrap();
    let (ok, out, err) = tally(
        &[
            "import",
            "--quiet",
            "--project",
            "alpha",
            file.to_str().unwrap(),
        ],
        &data,
    );
    assert!(ok, "import failed: {err}");
    assert!(
        out.contains("imported 3000 events") && out.contains("2 rejected"),
        "{out}"
    );
    assert!(
        out.contains("properties.amount"),
        "the schema error is reported: {out}"
    );
    // Importing the same file again adds nothing: message ids are idempotent.
    let (ok, out, _) = tally(
        &[
            "import",
            "--quiet",
            "--project",
            "alpha",
            file.to_str().unwrap(),
        ],
        &data,
    );
    assert!(
        ok && out.contains("imported 0 events") && out.contains("3000 duplicates"),
        "{out}"
    );

    let r = query_json(&data, "alpha", &rules);
    assert_eq!(
        r["per_day"]["rows"],
        json!([
            ["2026-07-01T00:00:00Z", 1500],
            ["2026-07-02T00:00:00Z", 1500]
        ])
    );
    assert_eq!(r["revenue"]["rows"], json!([[7500.0]]));

    // With a server: a project created meanwhile works at once, and `tally query` sees what
    // the server acknowledged even though it is still only in the server's WAL.
    let server = Server::start(&data, &[]);
    let b = create_project(&data, "beta");
    let (status, v) = server.post("/v1/events", &b.write_key, &json!([
        {"event": "purchase", "user_id": "x", "timestamp": "2026-07-01T09:00:00Z", "properties": {"amount": 4}},
        {"event": "view", "user_id": "y", "timestamp": "2026-07-02T09:00:00Z"}
    ]));
    assert_eq!((status, v["accepted"].clone()), (200, json!(2)), "{v}");
    let r = query_json(&data, "beta", &rules);
    assert_eq!(
        r["per_day"]["rows"],
        json!([["2026-07-01T00:00:00Z", 1], ["2026-07-02T00:00:00Z", 1]])
    );
    // The server answers the same for alpha's imported events.
    let r = server.query(&a.read_key, &serde_json::from_str(QUERY).unwrap());
    assert_eq!(r["revenue"]["rows"], json!([[7500.0]]));
    // The schema applies to HTTP ingest too.
    let (status, v) = server.post(
        "/v1/events",
        &a.write_key,
        &json!({"event": "purchase", "user_id": "u", "properties": {"amount": "x"}}),
    );
    assert_eq!(status, 400);
    assert_eq!(
        v["rejected"][0]["error"]["field"],
        json!("properties.amount")
    );

    // Import refuses a data dir a server holds, and says what to do.
    let (ok, _, err) = tally(
        &[
            "import",
            "--quiet",
            "--project",
            "alpha",
            file.to_str().unwrap(),
        ],
        &data,
    );
    assert!(!ok && err.contains("in use"), "{err}");

    // CLI errors are messages with a non-zero exit, not panics.
    let (ok, _, err) = tally(
        &[
            "query",
            "--project",
            "nope",
            "--rules",
            rules.to_str().unwrap(),
        ],
        &data,
    );
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, _, err) = tally(
        &[
            "query",
            "--project",
            "alpha",
            "--rules",
            "/nonexistent.json",
        ],
        &data,
    );
    assert!(!ok && err.contains("reading"), "{err}");
    std::fs::write(&rules, r#"{"time_range": {"from": "2026-07-01T00:00:00Z", "to": "2026-07-03T00:00:00Z"}, "rules": [{"name": "x", "measure": {"op": "nope"}}]}"#).unwrap();
    let (ok, _, err) = tally(
        &[
            "query",
            "--project",
            "alpha",
            "--rules",
            rules.to_str().unwrap(),
        ],
        &data,
    );
    assert!(!ok && err.contains("rules[0].measure.op"), "{err}");
    let (ok, out, _) = tally(&["project", "list", "--json"], &data);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
