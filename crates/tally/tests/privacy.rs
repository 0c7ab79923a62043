//! Privacy against a real `tally serve`: personal data sent in events and identity calls is
//! scrubbed before anything is written. Nothing raw is found in any file of the data directory
//! (the WAL, the metadata database, rollup snapshots, read byte for byte) nor in what the SQL
//! endpoint and the person API show (the Parquet files, which are compressed, are read back
//! through SQL after the server flushed them).

mod common;

use std::path::Path;

use common::{BIN, Server, create_project};
use serde_json::{Value, json};

/// What the client sent that must never be stored.
const RAW: [&str; 9] = [
    "jane@example.com",
    "4111 1111 1111 1111",
    "4111111111111111",
    "hunter2",
    "203.0.113.77",
    "198.51.100.23",
    "DE89 3704 0044 0532 0130 00",
    "30 1234567",
    "Jane Nickname",
];

/// Every file below `dir` but the Parquet files.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_none_or(|e| e != "parquet") {
            out.push(path);
        }
    }
}

fn assert_no_raw_data_in_files(dir: &Path) -> usize {
    let mut all = Vec::new();
    files(dir, &mut all);
    for path in &all {
        // The running server may replace a file meanwhile (a WAL segment, a journal).
        let bytes = match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            other => other.unwrap(),
        };
        for raw in RAW {
            assert!(
                !bytes.windows(raw.len()).any(|w| w == raw.as_bytes()),
                "`{raw}` is in {}",
                path.display()
            );
        }
    }
    all.len()
}

fn everything(server: &Server, key: &str) -> String {
    let (status, v) = server.post(
        "/v1/sql",
        key,
        &json!({"sql": "SELECT * FROM events ORDER BY timestamp"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(3), "{v}");
    v.to_string()
}

fn assert_scrubbed(text: &str) {
    for raw in RAW {
        assert!(!text.contains(raw), "`{raw}` is in {text}");
    }
}

#[test]
fn personal_data_is_scrubbed_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = create_project(&data, "shop");
    // A policy file: phone numbers hashed instead of masked, and one more named property.
    let policy = dir.path().join("pii.json");
    std::fs::write(
        &policy,
        r#"{"patterns": {"phone": "hash"}, "properties": [{"name": "nickname", "action": "mask"}]}"#,
    )
    .unwrap();
    let mut server = Server::start(&data, &["--pii-policy", policy.to_str().unwrap()]);

    let events = json!([
        {"event": "signup", "user_id": "u1", "label": "call +49 30 1234567",
         "properties": {"email": "Jane@Example.com", "note": "card 4111 1111 1111 1111, thanks",
                        "password": "hunter2", "client_ip": "198.51.100.23", "nickname": "Jane Nickname",
                        "bank": {"iban": "pay to DE89 3704 0044 0532 0130 00"}, "plan": "pro"},
         "context": {"ip": "203.0.113.77",
                     "page": {"url": "https://shop.test/thanks?email=jane@example.com&step=2",
                              "title": "Welcome jane@example.com"}}},
        {"event": "pageview", "user_id": "u2",
         "properties": {"email": "jane@example.com"},
         "context": {"ip": "203.0.113.77", "page": {"url": "https://shop.test/cards/4111111111111111"}}}
    ]);
    let (status, v) = server.post("/v1/events", &p.write_key, &events);
    assert_eq!((status, v["accepted"].as_u64()), (200, Some(2)), "{v}");
    let identify = json!({"userId": "u1", "traits": {"email": "jane@example.com",
                          "phone": "+49 30 1234567", "bio": "write to jane@example.com", "name": "Jane"}});
    assert_eq!(server.post("/v1/identify", &p.write_key, &identify).0, 200);

    // What queries see: scrubbed, with what may stay kept.
    let stored = everything(&server, &p.read_key);
    assert_scrubbed(&stored);
    let (_, rows) = server.post(
        "/v1/sql",
        &p.read_key,
        &json!({"sql": "SELECT ip, url, path, title, label, properties FROM events ORDER BY event DESC"}),
    );
    let signup = &rows["rows"][0];
    assert_eq!(signup[0], "203.0.113.0");
    assert_eq!(signup[1], "https://shop.test/thanks?email=[email]&step=2");
    assert_eq!(signup[3], "Welcome [email]");
    let label = signup[4].as_str().unwrap();
    assert!(label.starts_with("call [phone:"), "{label}");
    let props: Value = serde_json::from_str(signup[5].as_str().unwrap()).unwrap();
    assert!(props.get("password").is_none(), "{props}");
    assert_eq!(props["note"], "card [card], thanks");
    assert_eq!(props["client_ip"], "198.51.100.0");
    assert_eq!(props["nickname"], "[redacted]");
    assert_eq!(props["bank"]["iban"], "pay to [iban]");
    assert_eq!(props["plan"], "pro");
    // The same address hashes the same whatever its case, so it still counts and groups.
    let pageview = &rows["rows"][1];
    assert!(
        pageview[2].as_str().unwrap().starts_with("/cards/"),
        "{pageview}"
    );
    let pv_props: Value = serde_json::from_str(pageview[5].as_str().unwrap()).unwrap();
    assert!(props["email"].as_str().unwrap().starts_with("[hash:"));
    assert_eq!(props["email"], pv_props["email"]);

    // Person properties too.
    let r = common::client()
        .get(format!("{}/v1/persons/u1", server.url))
        .bearer_auth(&p.read_key)
        .send()
        .unwrap();
    let person: Value = r.json().unwrap();
    let traits = &person["properties"];
    assert_eq!(traits["email"], props["email"], "{person}");
    assert!(traits["phone"].as_str().unwrap().starts_with("[hash:"));
    assert_eq!(traits["bio"], "write to [email]");
    assert_eq!(traits["name"], "Jane");

    // No file holds any of it: the WAL and metadata now, the Parquet files (through SQL) and
    // everything else after a flush.
    assert!(assert_no_raw_data_in_files(&data) > 2);
    server.restart();
    assert_scrubbed(&everything(&server, &p.read_key));
    let parquet = walk_parquet(&data);
    assert!(parquet > 0, "the events were flushed to Parquet");
    assert_no_raw_data_in_files(&data);
}

fn walk_parquet(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            n += walk_parquet(&path);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            n += 1;
        }
    }
    n
}

#[test]
fn a_bad_policy_file_stops_the_server_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("pii.json");
    std::fs::write(&policy, r#"{"patterns": {"email": "shred"}}"#).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--pii-policy"])
        .arg(&policy)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PII policy") && err.contains("shred"), "{err}");
}

#[test]
fn tally_import_applies_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = create_project(&data, "shop");
    let file = dir.path().join("events.ndjson");
    std::fs::write(
        &file,
        concat!(
            r#"{"event": "signup", "user_id": "u1", "timestamp": "2026-07-01T10:00:00Z", "#,
            r#""properties": {"email": "jane@example.com", "note": "IBAN DE89370400440532013000"}, "#,
            r#""context": {"ip": "203.0.113.77"}}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "import",
            "--quiet",
            "--project",
            "shop",
            "--ip-mode",
            "drop",
        ])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(&data, &[]);
    let (status, v) = server.post(
        "/v1/sql",
        &p.read_key,
        &json!({"sql": "SELECT ip, properties FROM events"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"][0][0], Value::Null, "{v}");
    let props: Value = serde_json::from_str(v["rows"][0][1].as_str().unwrap()).unwrap();
    assert!(
        props["email"].as_str().unwrap().starts_with("[hash:"),
        "{props}"
    );
    assert_eq!(props["note"], "IBAN [iban]");
    assert_no_raw_data_in_files(&data);
}

fn export(server: &Server, id: &str, key: Option<&str>) -> (u16, Value) {
    let mut r = common::client().get(format!("{}/v1/persons/{id}/export", server.url));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn a_person_is_exported_whole_with_the_admin_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let other = create_project(dir.path(), "other");
    let server = Server::start(dir.path(), &[]);
    let events = json!([
        {"event": "pageview", "anonymous_id": "a1", "timestamp": "2026-10-01T10:00:00Z",
         "properties": {"plan": "free"}},
        {"event": "login", "anonymous_id": "a1", "user_id": "u1", "timestamp": "2026-10-01T10:05:00Z"},
        {"event": "purchase", "user_id": "u1", "timestamp": "2026-10-02T09:00:00Z",
         "properties": {"value": 42}},
        {"event": "pageview", "user_id": "u2", "timestamp": "2026-10-01T11:00:00Z"}
    ]);
    assert_eq!(server.post("/v1/events", &p.write_key, &events).0, 200);
    let identify = json!({"userId": "u1", "traits": {"plan": "pro"}});
    assert_eq!(server.post("/v1/identify", &p.write_key, &identify).0, 200);

    // By any of the person's ids: every event of every id, in time order, and the properties.
    let (status, v) = export(&server, "a1", Some(&p.admin_key));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], "u1");
    let mut ids: Vec<&str> = v["distinct_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a1", "u1"]);
    assert_eq!(v["properties"]["plan"], "pro");
    let names: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pageview", "login", "purchase", "$identify"]);
    assert_eq!(v["events"][2]["properties"]["value"], 42);
    assert_eq!(v["events"][0]["anonymous_id"], "a1");
    // The same after the events moved to Parquet.
    let mut server = server;
    server.restart();
    let (_, again) = export(&server, "u1", Some(&p.admin_key));
    assert_eq!(again["events"], v["events"]);

    // Someone who never sent anything; a read key; another project's admin key; no key.
    assert_eq!(export(&server, "nobody", Some(&p.admin_key)).0, 404);
    let (status, v) = export(&server, "u1", Some(&p.read_key));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("wrong_key_scope"))
    );
    let (status, v) = export(&server, "u1", Some(&other.admin_key));
    assert_eq!(status, 404, "{v}");
    assert!(!v.to_string().contains("purchase"));
    assert_eq!(export(&server, "u1", None).0, 401);
    // The admin key also reads what the read key reads; the web UI's sign-in stays read-only.
    let (status, _) = server.post(
        "/v1/query",
        &p.admin_key,
        &json!({"time_range": {"from": "2026-10-01T00:00:00Z", "to": "2026-10-03T00:00:00Z"},
                "rules": [{"name": "n", "measure": {"op": "count"}}]}),
    );
    assert_eq!(status, 200);
}

fn count_events(server: &Server, key: &str) -> Value {
    let (status, v) = server.post(
        "/v1/sql",
        key,
        &json!({"sql": "SELECT event, user_id, anonymous_id, person_id, ip FROM events ORDER BY event"}),
    );
    assert_eq!(status, 200, "{v}");
    v["rows"].clone()
}

#[test]
fn events_without_consent_are_counted_anonymously_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let server = Server::start(dir.path(), &[]);
    // Two events without consent (ours and Segment's shape), one with it.
    let events = json!([
        {"event": "a_pageview", "user_id": "u1", "anonymous_id": "a1",
         "context": {"consent": false, "ip": "203.0.113.77"}},
        {"event": "b_pageview", "user_id": "u1",
         "context": {"consent": {"categoryPreferences": {"Analytics": false}}}},
        {"event": "c_signup", "user_id": "u2", "context": {"consent": true}}
    ]);
    let (status, v) = server.post("/v1/events", &p.write_key, &events);
    assert_eq!((status, v["accepted"].as_u64()), (200, Some(3)), "{v}");
    // An identify without consent changes no person.
    let identify = json!({"userId": "u1", "anonymousId": "a9", "traits": {"plan": "pro"},
                          "context": {"consent": false}});
    assert_eq!(server.post("/v1/identify", &p.write_key, &identify).0, 200);
    let rows = count_events(&server, &p.read_key);
    assert_eq!(rows.as_array().unwrap().len(), 4, "{rows}");
    for row in rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[0] != "c_signup")
    {
        assert_eq!(
            (&row[1], &row[2], &row[4]),
            (&Value::Null, &Value::Null, &Value::Null),
            "{row}"
        );
        assert!(row[3].as_str().unwrap().starts_with("$anon:"), "{row}");
    }
    let signup = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0] == "c_signup")
        .unwrap();
    assert_eq!(signup[1], "u2");
    let r = common::client()
        .get(format!("{}/v1/persons/u1", server.url))
        .bearer_auth(&p.read_key)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "no person was created or merged");
    let text = rows.to_string();
    assert!(
        !text.contains("\"u1\"") && !text.contains("\"a1\""),
        "{text}"
    );

    // A project that drops them: acknowledged, never stored.
    let out = std::process::Command::new(BIN)
        .args(["project", "set", "shop", "--consent", "drop", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"consent\":\"drop\""));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let ev = json!({"event": format!("z_dropped_{n}"), "user_id": "u3", "context": {"consent": false}});
        let (status, v) = server.post("/v1/events", &p.write_key, &json!([ev]));
        assert_eq!((status, v["accepted"].as_u64()), (200, Some(1)), "{v}");
        let rows = count_events(&server, &p.read_key);
        let stored = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r[0].as_str().unwrap().starts_with("z_"))
            .count();
        // Until the server re-reads the project (every few seconds) they are still anonymized.
        if stored < n {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never dropped: {rows}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let bad = std::process::Command::new(BIN)
        .args([
            "project",
            "set",
            "shop",
            "--consent",
            "sometimes",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("anonymous or drop"));
}

#[test]
fn keys_are_rate_limited_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let other = create_project(dir.path(), "other");
    let server = Server::start(
        dir.path(),
        &["--ingest-rate-limit", "1", "--query-rate-limit", "2"],
    );
    let body = |i: usize| {
        serde_json::to_vec(&json!([{"event": format!("e{i}"), "user_id": "u1"}])).unwrap()
    };
    let ct = [("content-type", "application/json")];
    // Bursts of twice the rate pass, then 429 with Retry-After; nothing of a refused request
    // is stored.
    let mut statuses = Vec::new();
    let mut retry = None;
    for i in 0..6 {
        let (status, v, h) = server.post_raw("/v1/events", Some(&p.write_key), body(i), &ct);
        if status == 429 {
            assert_eq!(v["error"]["code"], "rate_limited", "{v}");
            retry = h
                .get("retry-after")
                .map(|r| r.to_str().unwrap().parse::<u64>().unwrap());
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..2], [200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry.is_some_and(|s| s >= 1), "{retry:?}");
    // Another project's key has its own budget, and read keys theirs.
    let (status, _, _) = server.post_raw("/v1/events", Some(&other.write_key), body(9), &ct);
    assert_eq!(status, 200);
    std::thread::sleep(std::time::Duration::from_secs(retry.unwrap()));
    let (status, _, _) = server.post_raw("/v1/events", Some(&p.write_key), body(10), &ct);
    assert_eq!(status, 200, "the key may send again after Retry-After");
    let (status, v) = server.post(
        "/v1/sql",
        &p.read_key,
        &json!({"sql": "SELECT event FROM events ORDER BY event"}),
    );
    assert_eq!(status, 200, "{v}");
    let stored: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    let accepted = statuses.iter().filter(|s| **s == 200).count() + 1;
    assert_eq!(stored.len(), accepted, "{stored:?} {statuses:?}");
    let mut limited = false;
    for _ in 0..8 {
        let r = common::client()
            .get(format!("{}/v1/rules", server.url))
            .bearer_auth(&p.read_key)
            .send()
            .unwrap();
        limited |= r.status().as_u16() == 429 && r.headers().contains_key("retry-after");
    }
    assert!(limited, "read keys are limited too");

    // A key's own rate overrides the default: a bulk loader's key without a limit, set over
    // the API (the cache takes up to 5 seconds) or given at creation.
    let (status, created) = keys_request(
        &server,
        "POST",
        "/v1/keys",
        &p.admin_key,
        Some(json!({"scope": "write", "rate_limit": 0})),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["rate_limit"], 0, "{created}");
    let bulk = created["key"].as_str().unwrap();
    for i in 0..20 {
        let (status, _, _) = server.post_raw("/v1/events", Some(bulk), body(100 + i), &ct);
        assert_eq!(status, 200, "request {i} of an unlimited key");
    }
    let id = created["id"].as_str().unwrap();
    let (status, v) = keys_request(
        &server,
        "PUT",
        &format!("/v1/keys/{id}"),
        &p.admin_key,
        Some(json!({"rate_limit": 2_000_000})),
    );
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("rate_limit")),
        "{v}"
    );
    let (status, v) = keys_request(
        &server,
        "PUT",
        &format!("/v1/keys/{id}"),
        &p.admin_key,
        Some(json!({"rate_limit": 1})),
    );
    assert_eq!((status, v["rate_limit"].as_u64()), (200, Some(1)), "{v}");
    std::thread::sleep(std::time::Duration::from_secs(6));
    let refused = (0..6).any(|i| {
        server
            .post_raw("/v1/events", Some(bulk), body(200 + i), &ct)
            .0
            == 429
    });
    assert!(refused, "the key's own rate of 1 per second applies");
    let (_, keys) = keys_request(&server, "GET", "/v1/keys", &p.admin_key, None);
    let listed = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap();
    assert_eq!(listed["rate_limit"], 1, "{keys}");
    // From the command line too (the default again).
    let (ok, out, err) = common::tally(
        &["keys", "limit", "--project", "shop", id, "default"],
        dir.path(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("default"), "{out}");
    let (ok, _, err) = common::tally(
        &["keys", "limit", "--project", "shop", id, "fast"],
        dir.path(),
    );
    assert!(!ok && err.contains("not a rate"), "{err}");
}

fn keys_request(
    server: &Server,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", server.url);
    let mut r = match method {
        "GET" => common::client().get(url),
        "DELETE" => common::client().delete(url),
        "PUT" => common::client().put(url),
        _ => common::client().post(url),
    }
    .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Waits until `key` is refused (the server caches key look-ups for 5 seconds).
fn until_refused(server: &Server, key: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, _) = keys_request(server, "GET", "/v1/rules", key, None);
        if status == 401 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the key still works");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn keys_are_listed_created_rotated_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let other = create_project(dir.path(), "other");
    let server = Server::start(dir.path(), &[]);

    let (status, v) = keys_request(&server, "GET", "/v1/keys", &p.admin_key, None);
    assert_eq!(status, 200, "{v}");
    let scopes: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["write", "read", "admin"]);
    assert!(
        !v.to_string().contains(&p.read_key),
        "secrets are never listed"
    );
    assert_eq!(
        keys_request(&server, "GET", "/v1/keys", &p.read_key, None).0,
        403
    );
    let (status, v) = keys_request(
        &server,
        "POST",
        "/v1/keys",
        &p.admin_key,
        Some(json!({"scope": "owner"})),
    );
    assert_eq!((status, v["error"]["field"].as_str()), (400, Some("scope")));

    // A new read key works at once; rotating it hands out another and retires it.
    let (status, created) = keys_request(
        &server,
        "POST",
        "/v1/keys",
        &p.admin_key,
        Some(json!({"scope": "read"})),
    );
    assert_eq!(status, 201, "{created}");
    let first = created["key"].as_str().unwrap().to_owned();
    assert!(first.starts_with("tr_"));
    assert_eq!(
        keys_request(&server, "GET", "/v1/rules", &first, None).0,
        200
    );
    let id = created["id"].as_str().unwrap();
    let (status, rotated) = keys_request(
        &server,
        "POST",
        &format!("/v1/keys/{id}/rotate"),
        &p.admin_key,
        None,
    );
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(
        keys_request(&server, "GET", "/v1/rules", &second, None).0,
        200
    );
    until_refused(&server, &first);
    // Revoked, and another project's admin cannot touch this project's keys.
    let new_id = rotated["id"].as_str().unwrap();
    let path = format!("/v1/keys/{new_id}");
    assert_eq!(
        keys_request(&server, "DELETE", &path, &other.admin_key, None).0,
        404
    );
    assert_eq!(
        keys_request(&server, "DELETE", &path, &p.admin_key, None).0,
        204
    );
    assert_eq!(
        keys_request(&server, "DELETE", &path, &p.admin_key, None).0,
        404
    );
    until_refused(&server, &second);

    // The same from the command line.
    let tally = |args: &[&str]| common::tally(args, dir.path());
    let (ok, out, err) = tally(&["keys", "create", "--project", "shop", "--scope", "write"]);
    assert!(ok, "{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    let write = made["key"].as_str().unwrap().to_owned();
    let (status, _) = server.post("/v1/events", &write, &json!({"event": "e", "user_id": "u"}));
    assert_eq!(status, 200);
    let (ok, out, _) = tally(&["keys", "list", "--project", "shop"]);
    assert!(ok && out.contains(made["id"].as_str().unwrap()) && !out.contains(&write));
    let (ok, _, err) = tally(&[
        "keys",
        "revoke",
        "--project",
        "shop",
        made["id"].as_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = tally(&[
        "keys",
        "revoke",
        "--project",
        "shop",
        made["id"].as_str().unwrap(),
    ]);
    assert!(!ok && err.contains("no live key"), "{err}");
    let (ok, _, err) = tally(&["keys", "create", "--project", "shop", "--scope", "root"]);
    assert!(!ok && err.contains("write, read or admin"), "{err}");
}

#[test]
fn retention_policies_remove_expired_events_whole_files_and_parts() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    // Ten days of events, each 24 hours apart (so each on its own UTC day): a pageview and a
    // signup each. The server applies the policies at start too, at the real now: the events
    // are placed relative to it so that both runs agree.
    let now = chrono::Utc::now();
    let at = |k: i64| now - chrono::Duration::days(k) - chrono::Duration::minutes(30);
    let mut events = Vec::new();
    for k in 0..10 {
        for event in ["pageview", "signup"] {
            events.push(json!({"event": event, "user_id": format!("u{k}"),
                               "timestamp": at(k).to_rfc3339()}));
        }
    }
    let mut server = Server::start(dir.path(), &[]);
    assert_eq!(
        server.post("/v1/events", &p.write_key, &json!(events)).0,
        200
    );
    server.stop();
    let tally = |args: &[&str]| common::tally(args, dir.path());
    // Everything 8 days, page views 5 days, at an instant of our choosing.
    assert!(tally(&["retention", "set", "--project", "shop", "8d"]).0);
    let (ok, out, err) = tally(&[
        "retention",
        "set",
        "--project",
        "shop",
        "--event",
        "pageview",
        "5 days",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("\"max_age\":\"5 days\""), "{out}");
    let (ok, _, err) = tally(&["retention", "set", "--project", "shop", "five days"]);
    assert!(!ok && err.contains("no retention period"), "{err}");
    let now_text = now.to_rfc3339();
    let now = ["--now", now_text.as_str()];
    let (ok, out, err) = tally(
        &[
            &["retention", "apply", "--project", "shop", "--dry-run"][..],
            &now,
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let dry: Value = serde_json::from_str(&out).unwrap();
    // The two oldest days go whole (4 events), the three before the last five lose their page
    // views (3 events).
    assert_eq!(dry["events_removed"], 7, "{dry}");
    // A dry run removes nothing.
    let (_, again, _) = tally(
        &[
            &["retention", "apply", "--project", "shop", "--dry-run"][..],
            &now,
        ]
        .concat(),
    );
    assert_eq!(again, out);
    let (ok, out, err) = tally(&[&["retention", "apply", "--project", "shop"][..], &now].concat());
    assert!(ok, "{err}");
    let done: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            done["events_removed"].as_u64(),
            done["files_removed"].as_u64(),
            done["files_rewritten"].as_u64()
        ),
        (Some(7), Some(2), Some(3)),
        "{done}"
    );
    let days: Vec<String> = (5..10)
        .rev()
        .map(|k| at(k).format("%Y-%m-%d").to_string())
        .collect();
    assert_eq!(done["days"], json!(days));
    // Applying again finds nothing more.
    let (_, out, _) = tally(&[&["retention", "apply", "--project", "shop"][..], &now].concat());
    assert!(out.contains("\"events_removed\":0"), "{out}");

    server.start_again();
    let (status, v) = server.post("/v1/sql", &p.read_key,
        &json!({"sql": "SELECT event, count(*) AS n, min(timestamp) AS first FROM events GROUP BY event ORDER BY event"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"][0][0], "pageview", "{v}");
    assert_eq!(v["rows"][0][1], 5);
    assert_eq!(v["rows"][1][0], "signup");
    assert_eq!(v["rows"][1][1], 8);
    // The admin key sees the policies and a dry run at the real now: nothing more to remove.
    let r = common::client()
        .get(format!("{}/v1/retention", server.url))
        .bearer_auth(&p.admin_key)
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["policies"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["dry_run"]["events_removed"], 0, "{v}");
    // Clearing a policy.
    server.stop();
    assert!(
        tally(&[
            "retention",
            "clear",
            "--project",
            "shop",
            "--event",
            "pageview"
        ])
        .0
    );
    let (ok, _, err) = tally(&[
        "retention",
        "clear",
        "--project",
        "shop",
        "--event",
        "pageview",
    ]);
    assert!(!ok && err.contains("no such retention policy"), "{err}");
}

/// `(page views, signups)` stored in project `shop`, read with `tally query` (the server is
/// stopped).
fn pageviews_and_signups(data: &Path) -> (u64, u64) {
    let rules = data.join("count.json");
    std::fs::write(
        &rules,
        json!({"time_range": {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
               "rules": [{"name": "n", "group_by": ["event"]}]})
        .to_string(),
    )
    .unwrap();
    let (ok, out, err) = common::tally(
        &[
            "query",
            "--json",
            "--project",
            "shop",
            "--rules",
            rules.to_str().unwrap(),
        ],
        data,
    );
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let count = |event: &str| {
        v["results"]["n"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == event)
            .map_or(0, |r| r[1].as_u64().unwrap())
    };
    (count("pageview"), count("signup"))
}

#[test]
fn a_retention_run_killed_midway_loses_nothing_that_should_stay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let p = create_project(data, "shop");
    // 120 days of a page view and a signup each: 120 files. Page views are kept 5 days, so a
    // run rewrites 115 files, one catalog swap each.
    let now = chrono::Utc::now();
    let days: u64 = 120;
    let mut events = Vec::new();
    for k in 0..days as i64 {
        let at = (now - chrono::Duration::days(k) - chrono::Duration::minutes(30)).to_rfc3339();
        for event in ["pageview", "signup"] {
            events.push(json!({"event": event, "user_id": format!("u{k}"), "timestamp": at}));
        }
    }
    let mut server = Server::start(data, &[]);
    assert_eq!(
        server.post("/v1/events", &p.write_key, &json!(events)).0,
        200
    );
    server.stop();
    let (ok, _, err) = common::tally(
        &[
            "retention",
            "set",
            "--project",
            "shop",
            "--event",
            "pageview",
            "5d",
        ],
        data,
    );
    assert!(ok, "{err}");
    let now_text = now.to_rfc3339();
    let apply = || {
        std::process::Command::new(BIN)
            .args([
                "retention",
                "apply",
                "--project",
                "shop",
                "--now",
                &now_text,
                "--data-dir",
            ])
            .arg(data)
            .env("TALLY_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    assert_eq!(pageviews_and_signups(data), (days, days));
    // SIGKILL runs at growing delays: wherever the kill lands, every signup and every recent
    // page view is there, once; only expired page views may be gone.
    let mut cut_midway = 0;
    for delay_ms in [50, 150, 300, 600, 1000, 1500] {
        let mut child = apply();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let (pageviews, signups) = pageviews_and_signups(data);
        assert_eq!(signups, days, "after a kill at {delay_ms} ms");
        assert!(
            (5..=days).contains(&pageviews),
            "after a kill at {delay_ms} ms: {pageviews} page views"
        );
        cut_midway += usize::from(pageviews > 5 && pageviews < days);
    }
    eprintln!("kills that cut a run midway: {cut_midway} of 6");
    // A run to the end leaves exactly what should stay.
    assert!(apply().wait().unwrap().success());
    assert_eq!(pageviews_and_signups(data), (5, days));
}
