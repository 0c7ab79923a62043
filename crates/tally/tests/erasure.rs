//! The right to erasure against a real `tally serve`. Two projects receive the same events,
//! except that only `shop` also has Alice's: as an anonymous visitor (`anon-a`), then logged
//! in (`alice`, merged with `anon-a`), some flushed to Parquet before a restart, some still in
//! the buffer and the WAL, all counted by saved rules' rollups, one of them in a stored report
//! output. After `DELETE /v1/persons/alice`, every query kind, the SQL endpoint, the export, the
//! person API and a report answer in `shop` exactly what they answer in `twin`, which never had
//! Alice; no file of the data directory but the (compressed) Parquet files holds her ids, and
//! the audit log says who erased how many events without naming her.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Project, Server, client, create_project, same_json, tally};
use serde_json::{Value, json};

const OTHERS: [&str; 5] = ["bob", "carol", "dave", "erin", "frank"];
/// Alice's ids: what must be gone.
const ALICE: [&str; 2] = ["alice", "anon-a"];

/// Day `d` of the test's fortnight (ending yesterday, so that relative report ranges hold it).
fn day(d: i64) -> chrono::NaiveDate {
    chrono::Utc::now().date_naive() - chrono::Duration::days(10) + chrono::Duration::days(d)
}

fn at(d: i64, hour: u32, minute: u32) -> String {
    format!("{}T{hour:02}:{minute:02}:00Z", day(d))
}

/// One person's visit on day `d`: two page views five minutes apart and a login; a signup on
/// day 0 and a purchase on day 4.
fn visit(ids: &Value, d: i64, hour: u32, out: &mut Vec<Value>) {
    let mut push = |event: &str, minute: u32, extra: Value| {
        let mut e = ids.clone();
        e["event"] = json!(event);
        e["timestamp"] = json!(at(d, hour, minute));
        if let Value::Object(x) = extra {
            e.as_object_mut().unwrap().extend(x);
        }
        out.push(e);
    };
    if d == 0 {
        push("signup", 0, json!({}));
    }
    push("pageview", 1, json!({"context": {"page": {"path": "/"}}}));
    push(
        "pageview",
        6,
        json!({"context": {"page": {"path": "/pricing"}}}),
    );
    push("login", 7, json!({}));
    if d == 4 {
        push(
            "purchase",
            9,
            json!({"properties": {"plan": "pro", "amount": 30}}),
        );
    }
}

/// The events of days `days`, Alice's too when `alice`.
fn events(days: std::ops::Range<i64>, alice: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for d in days {
        for (i, name) in OTHERS.iter().enumerate() {
            if (d + i as i64) % 3 == 0 && d != 0 && d != 4 {
                continue;
            }
            let ids = if *name == "bob" && d < 2 {
                json!({"anonymous_id": "anon-b"})
            } else {
                json!({"user_id": name})
            };
            visit(&ids, d, 8 + i as u32, &mut out);
        }
        if alice {
            let ids = if d < 3 {
                json!({"anonymous_id": "anon-a"})
            } else {
                json!({"user_id": "alice", "anonymous_id": "anon-a"})
            };
            visit(&ids, d, 15, &mut out);
        }
        if d == 6 {
            // Carol on Alice's laptop: Carol's event, which carries Alice's device id.
            let mut e = json!({"event": "login", "user_id": "carol", "timestamp": at(d, 20, 0)});
            if alice {
                e["anonymous_id"] = json!("anon-a");
            }
            out.push(e);
        }
    }
    out
}

fn post_events(server: &Server, p: &Project, events: Vec<Value>) {
    let n = events.len();
    let (status, v) = server.post("/v1/events", &p.write_key, &json!({ "events": events }));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accepted"], n, "{v}");
}

fn identify(server: &Server, p: &Project, user: &str, anon: &str, traits: Value) {
    let body = json!({"userId": user, "anonymousId": anon, "traits": traits});
    let (status, v) = server.post("/v1/identify", &p.write_key, &body);
    assert_eq!(status, 200, "{v}");
}

const RULES: [&str; 2] = [
    r#"{"name": "pv", "event": "pageview", "measure": {"op": "count"}, "interval": "day"}"#,
    r#"{"name": "revenue", "event": "purchase", "measure": {"op": "sum", "property": "properties.amount"}, "group_by": ["properties.plan"]}"#,
];

fn save_rules(server: &Server, p: &Project) {
    for r in RULES {
        let (s, v) = server.post("/v1/rules", &p.read_key, &serde_json::from_str(r).unwrap());
        assert!(s == 200 || s == 201, "{v}");
    }
    for name in ["pv", "revenue"] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (s, v) = get(server, &p.read_key, &format!("/v1/rules/{name}"));
            if s == 200 && v["rollup"]["state"] == "ready" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "rule {name} never got ready: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn get(server: &Server, key: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{}{path}", server.url))
        .bearer_auth(key)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Every query kind over the fortnight, the saved rules' definitions among them (answered
/// from their rollups).
fn every_kind() -> Value {
    let mut rules: Vec<Value> = vec![
        json!({"name": "daily", "interval": "day"}),
        json!({"name": "persons", "measure": {"op": "unique_users"}, "interval": "day"}),
        json!({"name": "by_person", "group_by": ["person_id"]}),
        json!({"name": "top_pages", "event": "pageview", "group_by": ["path"], "limit": 5, "other": true}),
        json!({"name": "dau", "measure": {"op": "dau"}, "interval": "day"}),
        json!({"name": "cumulative", "event": "signup", "measure": {"op": "unique_users"}, "interval": "day", "cumulative": true}),
        json!({"kind": "funnel", "name": "funnel", "steps": [{"event": "signup"}, {"event": "login"}, {"event": "purchase"}], "window": "7d"}),
        json!({"kind": "retention", "name": "retention", "period": "week", "periods": 2, "cohort_event": "signup", "return_event": "login"}),
        json!({"kind": "sessions", "name": "sessions", "interval": "day"}),
        json!({"kind": "sessions", "name": "entry", "breakdown": "$entry_page"}),
        json!({"kind": "paths", "name": "paths", "anchor": {"page": "/"}}),
        json!({"kind": "stickiness", "name": "sticky", "event": "login", "interval": "day"}),
        json!({"kind": "lifecycle", "name": "life", "event": "login", "interval": "day"}),
    ];
    for r in RULES {
        let mut r: Value = serde_json::from_str(r).unwrap();
        r["name"] = json!(format!("saved_{}", r["name"].as_str().unwrap()));
        rules.push(r);
    }
    json!({
        "time_range": {"from": format!("{}T00:00:00Z", day(0)), "to": format!("{}T00:00:00Z", day(10))},
        "rules": rules,
    })
}

fn sql(server: &Server, key: &str, q: &str) -> Value {
    let (status, v) = server.post("/v1/sql", key, &json!({ "sql": q }));
    assert_eq!(status, 200, "{q}: {v}");
    v["rows"].clone()
}

/// How many stored events name one of Alice's ids in any id column.
fn alice_rows(server: &Server, key: &str) -> i64 {
    let ids = "('alice', 'anon-a')";
    let rows = sql(
        server,
        key,
        &format!(
            "SELECT count(*) FROM events WHERE person_id IN {ids} OR user_id IN {ids} OR anonymous_id IN {ids}"
        ),
    );
    rows[0][0].as_i64().unwrap()
}

fn mentions_alice(text: &str) -> bool {
    ALICE.iter().any(|id| text.contains(&format!("\"{id}\"")))
}

/// Every file below `dir` but the Parquet files.
fn plain_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            plain_files(&path, out);
        } else if path.extension().is_none_or(|e| e != "parquet") {
            out.push(path);
        }
    }
}

/// The files below `dir` (Parquet excluded) that hold one of Alice's ids, byte for byte.
fn files_naming_alice(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    plain_files(dir, &mut files);
    files
        .into_iter()
        .filter(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false; // replaced meanwhile
            };
            ALICE
                .iter()
                .any(|id| bytes.windows(id.len()).any(|w| w == id.as_bytes()))
        })
        .map(|p| p.display().to_string())
        .collect()
}

/// The report both projects define: page views by person (so a person's id is in its output).
fn report() -> Value {
    json!({
        "title": "Who reads",
        "time_range": "last_14_days",
        "timezone": "UTC",
        "sections": [
            {"title": "By person", "query": {"event": "pageview", "group_by": ["person_id"]}, "display": "table"},
            {"title": "Funnel", "query": {"kind": "funnel", "steps": [{"event": "signup"}, {"event": "purchase"}], "window": "7d"}},
        ],
        "deliver": [{"type": "directory", "path": "who"}],
    })
}

/// Defines the report and sends it once; returns its id and the run's id.
fn send_report(server: &Server, p: &Project) -> (String, String) {
    let (status, created) = server.post("/v1/reports", &p.read_key, &report());
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let r = client()
        .post(format!("{}/v1/reports/{id}/send", server.url))
        .bearer_auth(&p.read_key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let run: Value = r.json().unwrap();
    let run_id = run["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = get(
            server,
            &p.read_key,
            &format!("/v1/reports/{id}/runs/{run_id}"),
        );
        if v["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    (id, run_id)
}

fn rendered(server: &Server, p: &Project, report: &str) -> Value {
    let r = client()
        .post(format!(
            "{}/v1/reports/{report}/run?format=json",
            server.url
        ))
        .bearer_auth(&p.read_key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut v: Value = r.json().unwrap();
    // Only the numbers: titles are the same, instants differ.
    v["sections"].take()
}

/// Sets up `shop` (with Alice) and `twin` (without) on a server: events flushed to Parquet
/// before a restart, saved rules, more events in the buffer, identity merges, a sent report.
fn setup(dir: &Path, report_dir: &Path) -> (Server, Project, Project, [(String, String); 2]) {
    let shop = create_project(dir, "shop");
    let twin = create_project(dir, "twin");
    let args = ["--report-dir", report_dir.to_str().unwrap()];
    let mut server = Server::start(dir, &args);
    post_events(&server, &shop, events(0..5, true));
    post_events(&server, &twin, events(0..5, false));
    server.restart(); // a graceful stop flushes: days 0..5 are in Parquet
    for p in [&shop, &twin] {
        save_rules(&server, p);
        identify(&server, p, "bob", "anon-b", json!({"plan": "free"}));
    }
    identify(
        &server,
        &shop,
        "alice",
        "anon-a",
        json!({"plan": "pro", "name": "Alice"}),
    );
    post_events(&server, &shop, events(5..10, true));
    post_events(&server, &twin, events(5..10, false));
    let reports = [send_report(&server, &shop), send_report(&server, &twin)];
    (server, shop, twin, reports)
}

/// Alice's events: those in `events(0..10, true)` (Carol's on her laptop excluded) and the
/// `$identify` event of her login.
fn alices_event_count() -> u64 {
    let sent = events(0..10, true)
        .iter()
        .filter(|e| {
            e["user_id"] == "alice" || (e["user_id"].is_null() && e["anonymous_id"] == "anon-a")
        })
        .count() as u64;
    sent + 1
}

#[test]
fn an_erased_person_is_gone_from_every_answer_and_nobody_elses_changes() {
    let dir = tempfile::tempdir().unwrap();
    let report_dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, shop, twin, [(shop_report, shop_run), (twin_report, _)]) =
        setup(&data, report_dir.path());

    // Before: Alice is everywhere in `shop`.
    let kinds = every_kind();
    let before = server.query(&shop.read_key, &kinds);
    let twin_answer = server.query(&twin.read_key, &kinds);
    assert!(!same_json(&before, &twin_answer));
    assert!(mentions_alice(&before["by_person"].to_string()), "{before}");
    // Her events, and Carol's from her laptop.
    assert_eq!(
        alice_rows(&server, &shop.read_key),
        alices_event_count() as i64 + 1
    );
    let (status, export) = get(&server, &shop.admin_key, "/v1/persons/anon-a/export");
    assert_eq!(status, 200, "{export}");
    assert_eq!(
        export["events"].as_array().unwrap().len() as u64,
        alices_event_count()
    );
    let (_, run) = get(
        &server,
        &shop.read_key,
        &format!("/v1/reports/{shop_report}/runs/{shop_run}?format=json"),
    );
    assert!(mentions_alice(&run.to_string()), "{run}");

    // Only an admin key of the project erases.
    let erase = |key: &str, id: &str| {
        let r = client()
            .delete(format!("{}/v1/persons/{id}", server.url))
            .bearer_auth(key)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or(Value::Null))
    };
    assert_eq!(erase(&shop.read_key, "alice").0, 403);
    assert_eq!(erase(&shop.write_key, "alice").0, 403);
    assert_eq!(erase("ta_not_a_key", "alice").0, 401);
    assert_eq!(
        alice_rows(&server, &shop.read_key),
        alices_event_count() as i64 + 1
    );

    let (status, erased) = erase(&shop.admin_key, "alice");
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["ids"], 2, "{erased}");
    let removed = erased["stored_events_removed"].as_u64().unwrap()
        + erased["buffered_events_removed"].as_u64().unwrap();
    assert_eq!(removed, alices_event_count(), "{erased}");
    assert!(
        erased["stored_events_removed"].as_u64().unwrap() > 0,
        "{erased}"
    );
    assert!(
        erased["buffered_events_removed"].as_u64().unwrap() > 0,
        "{erased}"
    );
    assert!(
        erased["person_records_removed"].as_u64().unwrap() >= 2,
        "{erased}"
    );
    assert_eq!(erased["report_runs_redacted"], 1, "{erased}");

    // Erasing someone a project never had removes nothing there (and is recorded).
    let (status, nothing) = erase(&twin.admin_key, "alice");
    assert_eq!(status, 200, "{nothing}");
    assert_eq!(nothing["stored_events_removed"], 0, "{nothing}");
    assert_eq!(nothing["buffered_events_removed"], 0, "{nothing}");

    // After: `shop` answers every kind exactly as `twin`, which never had Alice.
    let after = server.query(&shop.read_key, &kinds);
    assert!(
        same_json(&after, &twin_answer),
        "\n shop {after}\n twin {twin_answer}"
    );
    assert!(!mentions_alice(&after.to_string()));
    assert_eq!(alice_rows(&server, &shop.read_key), 0);
    let all = "SELECT event, person_id, timestamp FROM events WHERE event <> '$identify'
               ORDER BY timestamp, person_id, event";
    assert_eq!(
        sql(&server, &shop.read_key, all),
        sql(&server, &twin.read_key, all)
    );
    // Carol's event from Alice's laptop stays, without Alice's device id.
    let carol = "SELECT count(*), count(anonymous_id) FROM events WHERE person_id = 'carol'";
    assert_eq!(
        sql(&server, &shop.read_key, carol),
        sql(&server, &twin.read_key, carol)
    );
    for id in ALICE {
        assert_eq!(
            get(
                &server,
                &shop.admin_key,
                &format!("/v1/persons/{id}/export")
            )
            .0,
            404
        );
        assert_eq!(
            get(&server, &shop.read_key, &format!("/v1/persons/{id}")).0,
            404
        );
    }
    // Reports: a new rendering equals the twin's, the stored run no longer names her.
    assert_eq!(
        rendered(&server, &shop, &shop_report),
        rendered(&server, &twin, &twin_report)
    );
    let (_, run) = get(
        &server,
        &shop.read_key,
        &format!("/v1/reports/{shop_report}/runs/{shop_run}?format=json"),
    );
    assert!(!mentions_alice(&run.to_string()), "{run}");
    assert!(run.to_string().contains("[erased]"), "{run}");

    // The audit log: who and how many, not whom.
    let (status, audit) = get(&server, &shop.admin_key, "/v1/audit");
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["action"], "erase_person");
    assert_eq!(entries[0]["actor"], format!("key {}", &shop.admin_key[..7]));
    assert_eq!(
        entries[0]["detail"]["stored_events_removed"],
        erased["stored_events_removed"]
    );
    assert!(!audit.to_string().contains("alice") && !audit.to_string().contains("anon-a"));
    assert_eq!(get(&server, &shop.read_key, "/v1/audit").0, 403);
    let (_, twin_audit) = get(&server, &twin.admin_key, "/v1/audit");
    assert_eq!(
        twin_audit["entries"].as_array().unwrap().len(),
        1,
        "the twin's no-op erasure"
    );

    // No WAL segment, rollup snapshot or metadata page holds her ids.
    assert_eq!(files_naming_alice(&data), Vec::<String>::new());

    // A restart changes nothing (rollups rebuilt from what is left, WAL replayed).
    drop(server);
    let server = Server::start(
        &data,
        &["--report-dir", report_dir.path().to_str().unwrap()],
    );
    save_rules(&server, &shop);
    let again = server.query(&shop.read_key, &kinds);
    assert!(
        same_json(&again, &twin_answer),
        "\n shop {again}\n twin {twin_answer}"
    );
    assert_eq!(alice_rows(&server, &shop.read_key), 0);

    // She may come back: new events count again, as a new person.
    post_events(&server, &shop, events(9..10, true));
    assert!(alice_rows(&server, &shop.read_key) > 0);
}

#[test]
fn the_cli_erases_by_any_linked_id_when_the_server_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let report_dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, shop, twin, _) = setup(&data, report_dir.path());

    // Beside a running server the CLI refuses and says what to do instead.
    let (ok, _, err) = tally(&["persons", "erase", "--project", "shop", "anon-a"], &data);
    assert!(!ok);
    assert!(err.contains("DELETE /v1/persons/"), "{err}");

    server.stop();
    let (ok, out, err) = tally(&["persons", "erase", "--project", "shop", "anon-a"], &data);
    assert!(ok, "{err}");
    let erased: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(erased["ids"], 2, "{erased}");
    let removed = erased["stored_events_removed"].as_u64().unwrap()
        + erased["buffered_events_removed"].as_u64().unwrap();
    assert_eq!(removed, alices_event_count(), "{erased}");
    // Replaced files are deleted at once: no server can be reading them.
    assert_eq!(files_naming_alice(&data), Vec::<String>::new());

    // Again: nothing left to remove, and recorded again.
    let (ok, out, _) = tally(&["persons", "erase", "--project", "shop", "alice"], &data);
    assert!(ok);
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["stored_events_removed"], 0, "{again}");
    assert_eq!(again["buffered_events_removed"], 0, "{again}");
    let (ok, out, _) = tally(&["audit", "list", "--project", "shop"], &data);
    assert!(ok);
    let log: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(log.as_array().unwrap().len(), 2, "{log}");
    assert!(
        log[1]["actor"].as_str().unwrap().starts_with("cli "),
        "{log}"
    );
    assert!(
        !out.contains("anon-a") && !out.contains("\"alice\""),
        "{out}"
    );

    // Bad input: an unknown project, an empty id.
    let (ok, _, err) = tally(&["persons", "erase", "--project", "nope", "x"], &data);
    assert!(!ok && err.contains("nope"), "{err}");
    let (ok, _, err) = tally(&["persons", "erase", "--project", "shop", " "], &data);
    assert!(!ok && err.contains("empty"), "{err}");

    server.start_again();
    save_rules(&server, &shop);
    let kinds = every_kind();
    let shop_answer = server.query(&shop.read_key, &kinds);
    let twin_answer = server.query(&twin.read_key, &kinds);
    assert!(
        same_json(&shop_answer, &twin_answer),
        "\n shop {shop_answer}\n twin {twin_answer}"
    );
    assert_eq!(alice_rows(&server, &shop.read_key), 0);
}
