//! Reports end to end against a real `tally serve`: definitions over the API and the CLI,
//! rendering (JSON, CSV, zip, HTML) with golden snapshots, reproducible re-runs, delivery to a
//! real webhook receiver and a real SMTP server (Python's `aiosmtpd`), and a schedule that
//! survives SIGKILL.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Helper, Project, Server, client, create_project};
use serde_json::{Value, json};

fn golden_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/reports")
}

/// The fixed data set: a week of page views, signups and purchases from `start`, and three
/// signups the week before; or, with `extra`, five late signups.
fn ingest(server: &Server, p: &Project, start: chrono::NaiveDate, extra: bool) {
    let day_at = |d: i64, time: &str| format!("{}T{time}Z", start + chrono::Duration::days(d));
    let mut events = Vec::new();
    if extra {
        // Late signups, received after the first run.
        for i in 0..5 {
            events.push(json!({"event": "signup", "user_id": format!("late{i}"),
                "timestamp": day_at(2, "12:00:00")}));
        }
        let (status, v) = server.post("/v1/events", &p.write_key, &json!({ "events": events }));
        assert_eq!(status, 200, "{v}");
        return;
    }
    let pages = ["/", "/pricing", "/docs", "/", "/blog", "/", "/pricing"];
    for day in 0..7 {
        for i in 0..(3 + day * 2) {
            events.push(json!({
                "event": "pageview", "anonymous_id": format!("v{}", i % 9),
                "timestamp": day_at(day as i64, &format!("{:02}:15:00", 8 + i % 12)),
                "context": {"page": {"url": format!("https://shop.test{}", pages[(i + day) % 7])},
                            "country": if i % 3 == 0 { "DE" } else { "FR" }},
            }));
        }
        events.push(json!({"event": "signup", "user_id": format!("u{day}"),
            "timestamp": day_at(day as i64, "10:00:00")}));
        if day % 2 == 0 {
            events.push(json!({"event": "purchase", "user_id": format!("u{day}"),
                "timestamp": day_at(day as i64, "11:00:00")}));
        }
    }
    // The week before, for the comparison.
    for day in 0..3 {
        events.push(json!({"event": "signup", "user_id": format!("old{day}"),
            "timestamp": day_at(day - 6, "10:00:00")}));
    }
    let (status, v) = server.post("/v1/events", &p.write_key, &json!({ "events": events }));
    assert_eq!(status, 200, "{v}");
}

fn weekly(deliver: Value, schedule: Option<Value>) -> Value {
    let mut def = json!({
        "title": "Weekly shop report",
        "time_range": "last_7_days",
        "timezone": "Europe/Berlin",
        "sections": [
            {"title": "Page views per day", "query": {"event": "pageview", "interval": "day"}, "display": "chart"},
            {"title": "Signups", "query": {"event": "signup"}, "display": "number"},
            {"title": "Top pages", "query": {"event": "pageview", "group_by": ["path"], "limit": 5}, "display": "table"},
            {"title": "Signup to purchase", "query": {"kind": "funnel", "steps": [{"event": "signup"}, {"event": "purchase"}], "window": "1d"}},
        ],
        "deliver": deliver,
    });
    if let Some(s) = schedule {
        def["schedule"] = s;
    }
    def
}

fn get(server: &Server, key: &str, path: &str) -> (u16, reqwest::blocking::Response) {
    let r = client()
        .get(format!("{}{path}", server.url))
        .bearer_auth(key)
        .send()
        .unwrap();
    (r.status().as_u16(), r)
}

fn post_empty(server: &Server, key: &str, path: &str) -> reqwest::blocking::Response {
    client()
        .post(format!("{}{path}", server.url))
        .bearer_auth(key)
        .send()
        .unwrap()
}

/// What `POST /v1/query` gives for the same queries over the report's resolved range.
fn query_results(server: &Server, p: &Project, report: &Value) -> Value {
    let tr = &report["time_range"];
    let rules: Vec<Value> = report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["query"].clone())
        .collect();
    let q = json!({"time_range": {"from": tr["from"], "to": tr["to"], "timezone": tr["timezone"]},
                   "rules": rules, "exact": true});
    server.query(&p.read_key, &q)
}

fn check_golden(name: &str, got: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("TALLY_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with TALLY_BLESS=1", path.display()));
    assert_eq!(got, want, "{name} differs from its golden snapshot");
}

#[test]
fn reports_are_defined_rendered_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let other = create_project(dir.path(), "other");
    let server = Server::start(dir.path(), &[]);
    let nov16 = chrono::NaiveDate::from_ymd_opt(2026, 11, 16).unwrap();
    ingest(&server, &p, nov16, false);

    // Bad definitions are refused with the field named.
    let mut bad = weekly(json!([]), None);
    bad["time_range"] = json!("fortnight");
    let (status, v) = server.post("/v1/reports", &p.read_key, &bad);
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("time_range")),
        "{v}"
    );
    let (status, v) = server.post(
        "/v1/reports",
        &p.read_key,
        &weekly(json!([{"type": "directory", "path": "../../etc"}]), None),
    );
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("deliver[0].path")),
        "{v}"
    );
    let (status, v) = server.post(
        "/v1/reports",
        &p.read_key,
        &weekly(json!([]), Some(json!({"cron": "every monday"}))),
    );
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("schedule.cron")),
        "{v}"
    );

    let (status, created) = server.post(
        "/v1/reports",
        &p.read_key,
        &weekly(
            json!([]),
            Some(json!({"cron": "0 9 * * 1", "timezone": "Europe/Berlin"})),
        ),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created["next_run_at"].as_str().is_some());
    let (status, r) = get(&server, &p.read_key, "/v1/reports");
    assert_eq!(status, 200);
    assert_eq!(r.json::<Value>().unwrap()["reports"][0]["id"], id.as_str());
    // Another project's key sees nothing of it.
    assert_eq!(
        get(&server, &other.read_key, &format!("/v1/reports/{id}")).0,
        404
    );
    assert_eq!(
        post_empty(&server, &other.read_key, &format!("/v1/reports/{id}/run")).status(),
        404
    );

    // JSON: the numbers are the ones the query API gives for the resolved range.
    let at = "2026-11-23T08:00:00Z";
    let pinned = format!("/v1/reports/{id}/run?format=json&at={at}&watermark=2099-01-01T00:00:00Z");
    let r = post_empty(&server, &p.read_key, &pinned);
    assert_eq!(r.status(), 200);
    let report: Value = r.json().unwrap();
    assert_eq!(report["time_range"]["from"], "2026-11-15T23:00:00Z");
    assert_eq!(report["time_range"]["to"], "2026-11-22T23:00:00Z");
    let expected = query_results(&server, &p, &report);
    for s in report["sections"].as_array().unwrap() {
        let name = s["query"]["name"].as_str().unwrap();
        assert_eq!(s["result"], expected[name], "section {name}");
    }
    let signups = &report["sections"][1]["result"];
    assert_eq!(
        signups["columns"],
        json!(["value", "previous", "delta", "delta_ratio"])
    );
    assert_eq!(signups["rows"][0][0], 7);
    assert_eq!(signups["rows"][0][1], 3);

    // CSV per section, a zip of all, and HTML: golden snapshots (the report id is random).
    let mut csvs = Vec::new();
    for n in 1..=4 {
        let r = post_empty(
            &server,
            &p.read_key,
            &format!("{pinned}&format=csv&section={n}").replace("format=json&", ""),
        );
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        csvs.push(r.text().unwrap());
    }
    for (n, csv) in csvs.iter().enumerate() {
        check_golden(&format!("weekly-{}.csv", n + 1), csv);
    }
    let r = post_empty(
        &server,
        &p.read_key,
        &pinned.replace("format=json", "format=csv"),
    );
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert!(r.bytes().unwrap().starts_with(b"PK\x03\x04"));
    let r = post_empty(
        &server,
        &p.read_key,
        &pinned.replace("format=json", "format=html"),
    );
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().unwrap();
    assert!(html.contains("<svg") && html.contains("Nov 16 – Nov 22, 2026"));
    check_golden("weekly.html", &html.replace(&id, "REPORT_ID"));
    let r = post_empty(
        &server,
        &p.read_key,
        &pinned.replace("format=json", "format=pdf"),
    );
    assert_eq!(r.status(), 400);

    // Re-running for the same instant and watermark gives the same numbers after late events.
    let now = tally_core::time::format_rfc3339(chrono::Utc::now());
    let pinned_now = format!("/v1/reports/{id}/run?at={at}&watermark={now}");
    let before: Value = post_empty(&server, &p.read_key, &pinned_now)
        .json()
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    ingest(&server, &p, nov16, true);
    let again: Value = post_empty(&server, &p.read_key, &pinned_now)
        .json()
        .unwrap();
    assert_eq!(before["sections"], again["sections"]);
    assert_eq!(before["watermark"], now.as_str());
    let fresh: Value = post_empty(
        &server,
        &p.read_key,
        &format!("/v1/reports/{id}/run?at={at}"),
    )
    .json()
    .unwrap();
    assert_ne!(
        fresh["sections"][1]["result"],
        before["sections"][1]["result"]
    );

    // The CLI sees the same reports and renders the same CSV.
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .args(["--project", "shop", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(cli(&["reports", "list"]).contains("Weekly shop report"));
    let json_cli = cli(&[
        "reports",
        "run",
        &id,
        "--at",
        at,
        "--watermark",
        "2099-01-01T00:00:00Z",
    ]);
    let from_cli: Value = serde_json::from_str(&json_cli).unwrap();
    assert_eq!(
        from_cli["sections"][2]["result"],
        report["sections"][2]["result"]
    );
    let def_file = dir.path().join("daily.json");
    let mut daily = weekly(json!([]), None);
    daily["title"] = json!("Daily");
    daily["time_range"] = json!("yesterday");
    std::fs::write(&def_file, daily.to_string()).unwrap();
    let new_id = cli(&["reports", "create", def_file.to_str().unwrap()])
        .trim()
        .to_owned();
    assert_eq!(
        get(&server, &p.read_key, &format!("/v1/reports/{new_id}")).0,
        200
    );
    let out = Command::new(BIN)
        .args(["reports", "run", "nope", "--project", "shop", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    // PUT replaces, DELETE removes.
    let r = client()
        .put(format!("{}/v1/reports/{id}", server.url))
        .bearer_auth(&p.read_key)
        .json(&daily)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["title"], "Daily");
    let r = client()
        .delete(format!("{}/v1/reports/{id}", server.url))
        .bearer_auth(&p.read_key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        get(&server, &p.read_key, &format!("/v1/reports/{id}")).0,
        404
    );
}

fn wait_for_run(server: &Server, p: &Project, id: &str, run: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, r) = get(server, &p.read_key, &format!("/v1/reports/{id}/runs/{run}"));
        let v: Value = r.json().unwrap();
        if matches!(v["status"].as_str(), Some("succeeded" | "failed")) {
            return v;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn reports_are_delivered_by_webhook_email_and_directory() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Helper::start("smtp_sink.py", dir.path(), &["--auth", "reports:s3cret"]);
    let hook = Helper::start("webhook_receiver.py", dir.path(), &["--fail", "2"]);
    let p = create_project(dir.path(), "shop");
    let smtp_url = format!("smtp://reports:s3cret@127.0.0.1:{}", smtp.port);
    let report_dir = dir.path().join("delivered");
    let server = Server::start(
        dir.path(),
        &[
            "--smtp-url",
            &smtp_url,
            "--smtp-from",
            "Tally Reports <reports@shop.test>",
            "--report-retry",
            "1s",
            "--report-dir",
            report_dir.to_str().unwrap(),
        ],
    );
    // Recent days, so the report's relative range holds them whenever the test runs.
    let start = chrono::Utc::now().date_naive() - chrono::Duration::days(8);
    ingest(&server, &p, start, false);
    let deliver = json!([
        {"type": "webhook", "url": format!("http://127.0.0.1:{}/hooks/tally", hook.port), "secret": "whsec"},
        {"type": "email", "to": ["ana@shop.test", "ben@shop.test"]},
        {"type": "directory", "path": "weekly"},
    ]);
    let mut def = weekly(deliver, None);
    def["time_range"] = json!("last_14_days");
    def["timezone"] = json!("UTC");
    let (status, created) = server.post("/v1/reports", &p.read_key, &def);
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();

    let r = post_empty(&server, &p.read_key, &format!("/v1/reports/{id}/send"));
    assert_eq!(r.status(), 202);
    let run: Value = r.json().unwrap();
    let run_id = run["id"].as_str().unwrap();
    let run = wait_for_run(&server, &p, id, run_id, Duration::from_secs(60));
    assert_eq!(run["status"], "succeeded", "{run}");
    let attempts: Vec<(&str, i64)> = run["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["type"].as_str().unwrap(), d["attempts"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        attempts,
        vec![("webhook", 3), ("email", 1), ("directory", 1)]
    );

    // The stored output is what was delivered.
    let (_, r) = get(
        &server,
        &p.read_key,
        &format!("/v1/reports/{id}/runs/{run_id}?format=json"),
    );
    let output: Value = r.json().unwrap();
    let expected = query_results(&server, &p, &output);

    // Webhook: two 503s, then accepted; every attempt is the same signed delivery.
    let calls = hook.wait_for(3, Duration::from_secs(5));
    assert_eq!(
        calls
            .iter()
            .map(|c| c["ok"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        [false, false, true]
    );
    for c in &calls {
        let h = &c["headers"];
        assert_eq!(c["path"], "/hooks/tally");
        assert_eq!(h["x-tally-delivery"], format!("{run_id}.0"));
        assert_eq!(h["content-type"], "application/json");
        let body = c["body"].as_str().unwrap();
        assert_eq!(
            h["x-tally-signature"],
            tally_report::signature("whsec", body.as_bytes())
        );
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v, output);
    }

    // Email: one valid MIME message to both recipients, authenticated, with the HTML body,
    // a text alternative, the charts as inline PNGs and a CSV per section.
    let mails = smtp.wait_for(1, Duration::from_secs(5));
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m["authenticated_as"], "reports");
    assert_eq!(m["envelope_to"], json!(["ana@shop.test", "ben@shop.test"]));
    assert_eq!(m["envelope_from"], "reports@shop.test");
    assert!(
        m["subject"]
            .as_str()
            .unwrap()
            .starts_with("Weekly shop report · ")
    );
    assert_eq!(m["mime_version"], "1.0");
    assert_eq!(m["message_id"], format!("<{run_id}.1@shop.test>"));
    let parts = m["parts"].as_array().unwrap();
    for part in parts {
        assert_eq!(part["defects"], json!([]), "{part}");
    }
    assert_eq!(m["defects"], json!([]));
    let types: Vec<&str> = parts
        .iter()
        .map(|p| p["content_type"].as_str().unwrap())
        .collect();
    for t in [
        "multipart/mixed",
        "multipart/alternative",
        "multipart/related",
        "text/plain",
        "text/html",
        "image/png",
        "text/csv",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    let html = parts
        .iter()
        .find(|p| p["content_type"] == "text/html")
        .unwrap()["text"]
        .as_str()
        .unwrap();
    let images: Vec<&Value> = parts
        .iter()
        .filter(|p| p["content_type"] == "image/png")
        .collect();
    // Two chart sections (page views and the funnel); the number and the table are HTML.
    assert_eq!(images.len(), 2);
    for img in images {
        assert_eq!(img["png_signature_ok"], true);
        let cid = img["content_id"].as_str().unwrap().trim_matches(['<', '>']);
        assert!(
            html.contains(&format!("cid:{cid}")),
            "the HTML does not show {cid}"
        );
    }
    let signups = expected["section_2"]["rows"][0][0].as_i64().unwrap();
    assert!(
        html.contains(&format!(">{signups}</div>")),
        "the email lacks the signups number {signups}"
    );
    let top = &expected["section_3"]["rows"][0];
    assert!(html.contains(&format!(">{}</td>", top[0].as_str().unwrap())));
    let csv_names: Vec<&str> = parts
        .iter()
        .filter(|p| p["content_type"] == "text/csv")
        .map(|p| p["filename"].as_str().unwrap())
        .collect();
    assert_eq!(
        csv_names,
        [
            "01-page-views-per-day.csv",
            "02-signups.csv",
            "03-top-pages.csv",
            "04-signup-to-purchase.csv"
        ]
    );
    let csv = parts
        .iter()
        .find(|p| p["filename"] == "03-top-pages.csv")
        .unwrap()["text"]
        .as_str()
        .unwrap();
    assert!(csv.starts_with("path,value\r\n"));
    assert!(csv.contains(&format!("{},{}", top[0].as_str().unwrap(), top[1])));

    // Directory: the run's folder below --report-dir.
    let folders: Vec<_> = std::fs::read_dir(report_dir.join("weekly").join(id))
        .unwrap()
        .collect();
    assert_eq!(folders.len(), 1);
    let folder = folders[0].as_ref().unwrap().path();
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(folder.join("report.json")).unwrap()).unwrap();
    assert_eq!(on_disk, output);
    assert!(
        std::fs::read_to_string(folder.join("report.html"))
            .unwrap()
            .contains("<svg")
    );

    // The history is the same over the CLI.
    let out = Command::new(BIN)
        .args(["reports", "runs", id, "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["id"], run_id);
    assert_eq!(runs[0]["deliveries"][0]["attempts"], 3);

    // `tally reports send` records a run that the running server delivers.
    let out = Command::new(BIN)
        .args(["reports", "send", id, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_run = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let run = wait_for_run(&server, &p, id, &cli_run, Duration::from_secs(30));
    assert_eq!(
        (run["status"].as_str(), run["trigger"].as_str()),
        (Some("succeeded"), Some("manual")),
        "{run}"
    );
    assert_eq!(smtp.wait_for(2, Duration::from_secs(5)).len(), 2);
}

#[test]
fn scheduled_runs_survive_sigkill_without_missing_or_doubling_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    // Each delivery takes a second, so the kill lands in the middle of one.
    let hook = Helper::start("webhook_receiver.py", dir.path(), &["--delay", "1"]);
    let p = create_project(dir.path(), "shop");
    let mut server = Server::start(dir.path(), &["--report-retry", "1s"]);
    let def = json!({
        "title": "Every two seconds", "time_range": "today",
        "sections": [{"title": "Events", "query": {"measure": {"op": "count"}}, "display": "number"}],
        // Six fields: seconds first.
        "schedule": {"cron": "*/2 * * * * *"},
        "deliver": [{"type": "webhook", "url": format!("http://127.0.0.1:{}/", hook.port)}],
    });
    let (status, created) = server.post("/v1/reports", &p.read_key, &def);
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    hook.wait_for(3, Duration::from_secs(30));
    // Kill while a delivery is in flight (the receiver holds each for a second).
    std::thread::sleep(Duration::from_millis(1300));
    server.kill9();
    let killed_at = chrono::Utc::now();
    std::thread::sleep(Duration::from_secs(3));
    server.start_again();
    let before = hook.records().len();
    hook.wait_for(before + 3, Duration::from_secs(30));
    server.stop();

    let runs: Value = {
        let out = Command::new(BIN)
            .args([
                "reports",
                "runs",
                &id,
                "--json",
                "--limit",
                "1000",
                "--data-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let runs = runs.as_array().unwrap();
    let mut slots: Vec<&str> = runs.iter().map(|r| r["slot"].as_str().unwrap()).collect();
    slots.sort_unstable();
    let n = slots.len();
    slots.dedup();
    assert_eq!(slots.len(), n, "a slot ran twice: {runs:?}");
    // Slots are two seconds apart, except across the downtime, where the first missed slot
    // ran once on restart (the catch-up policy) and the rest were not run.
    let times: Vec<chrono::DateTime<chrono::Utc>> = slots
        .iter()
        .map(|s| tally_core::time::parse_rfc3339(s).unwrap())
        .collect();
    let gaps: Vec<i64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds())
        .collect();
    assert!(
        gaps.iter().filter(|g| **g != 2).count() <= 1,
        "slots missed outside the downtime: {slots:?}"
    );
    assert!(
        times.iter().any(|t| *t > killed_at),
        "no run after the restart"
    );
    // The receiver saw each run, and a run repeated only with its own delivery id (a delivery
    // cut by the kill is repeated once Tally is back, and is recognisable as a repeat).
    let records = hook.records();
    let mut by_delivery: std::collections::HashMap<String, Vec<String>> = Default::default();
    for r in &records {
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        by_delivery
            .entry(
                r["headers"]["x-tally-delivery"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
            .or_default()
            .push(body["at"].as_str().unwrap().to_owned());
    }
    let mut ats: Vec<&String> = by_delivery.values().map(|v| &v[0]).collect();
    for v in by_delivery.values() {
        assert!(
            v.iter().all(|a| a == &v[0]),
            "one delivery id carried two slots: {v:?}"
        );
    }
    let distinct = ats.len();
    ats.sort_unstable();
    ats.dedup();
    assert_eq!(ats.len(), distinct, "two runs delivered the same slot");
    for r in runs.iter().filter(|r| r["status"] == "succeeded") {
        let delivery = format!("{}.0", r["id"].as_str().unwrap());
        assert!(
            by_delivery.contains_key(&delivery),
            "run {delivery} succeeded but never arrived"
        );
    }
}
