//! The browser tracker (`/t.js`) in real headless Chromium (Debian's `chromium`, installed by
//! `tests/clients/setup.sh`) on test pages served locally from another origin: page views, an
//! SPA navigation, custom events (also ones queued before the script loaded) and an outbound
//! link arrive with the right path, referrer and browser, under one cookieless visitor id.
//! Plus the script's size, Do-Not-Track, and CORS on ingest endpoints only.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Project, Server, client, create_project};
use serde_json::{Value, json};

struct PageServer {
    child: Child,
    url: String,
}

impl Drop for PageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `dir` over HTTP (Python's http.server) on a free port.
fn serve_pages(dir: &std::path::Path) -> PageServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client().get(format!("{url}/start.html")).send().is_err() {
        assert!(Instant::now() < deadline, "the page server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    PageServer { child, url }
}

fn rows(server: &Server, p: &Project, rule: Value) -> Value {
    let q = json!({"time_range": {"from": "2026-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"},
                   "rules": [rule]});
    server.query(&p.read_key, &q)["r"]["rows"].clone()
}

#[test]
fn page_views_spa_navigation_custom_events_and_outbound_links_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "site");
    let server = Server::start(dir.path(), &[]);
    let pages = tempfile::tempdir().unwrap();
    std::fs::write(
        pages.path().join("start.html"),
        "<!doctype html><title>Start</title><script>location.href = '/app.html?utm_source=newsletter'</script>",
    )
    .unwrap();
    std::fs::write(
        pages.path().join("app.html"),
        format!(
            r#"<!doctype html><html><head><title>App</title>
<script>window.tally=window.tally||function(){{(tally.q=tally.q||[]).push(arguments)}};tally('queued_early',{{n:1}})</script>
<script defer src="{tally}/t.js" data-key="{key}"></script>
</head><body><a id="out" href="https://outbound.example/docs">docs</a>
<script>
document.getElementById('out').addEventListener('click', function (e) {{ e.preventDefault() }});
window.addEventListener('load', function () {{
  setTimeout(function () {{
    history.pushState({{}}, '', '/pricing');
    setTimeout(function () {{
      tally('signup', {{plan: 'pro'}});
      document.getElementById('out').click();
      document.title = 'done';
    }}, 300);
  }}, 300);
}});
</script></body></html>"#,
            tally = server.url,
            key = p.write_key
        ),
    )
    .unwrap();
    let site = serve_pages(pages.path());
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("{}/start.html", site.url))
        .output()
        .expect("run chromium (tests/clients/setup.sh installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Beacons are sent asynchronously: wait until all five events are there.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = rows(
            &server,
            &p,
            json!({"name": "r", "measure": {"op": "count"}}),
        );
        if n == json!([[5]]) {
            break;
        }
        assert!(Instant::now() < deadline, "events so far: {n}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = rows(
        &server,
        &p,
        json!({"name": "r", "measure": {"op": "count"},
               "group_by": ["event", "path", "referrer", "utm_source", "library"]}),
    );
    let mut got: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r[0].as_str().unwrap(),
                r[1],
                r[2],
                r[3],
                r[4]
            )
        })
        .collect();
    got.sort();
    let start = format!("\"{}/start.html\"", site.url);
    let app = format!("\"{}/app.html?utm_source=newsletter\"", site.url);
    assert_eq!(
        got,
        [
            format!(r#"outbound_link "/pricing" {app} null "tally.js""#),
            format!(r#"pageview "/app.html" {start} "newsletter" "tally.js""#),
            format!(r#"pageview "/pricing" {app} null "tally.js""#),
            format!(r#"queued_early "/app.html" {start} "newsletter" "tally.js""#),
            format!(r#"signup "/pricing" {app} null "tally.js""#),
        ],
        "{events}"
    );
    let custom = rows(
        &server,
        &p,
        json!({"name": "r", "measure": {"op": "count"}, "filters": [["event", "in", ["signup", "outbound_link"]]],
               "group_by": ["properties.plan", "properties.url"]}),
    );
    assert_eq!(
        custom,
        json!([[null, "https://outbound.example/docs", 1], ["pro", null, 1]])
    );
    // One cookieless visitor, in one session, in Chrome.
    let who = rows(
        &server,
        &p,
        json!({"name": "r", "measure": {"op": "count"}, "group_by": ["anonymous_id", "session_id", "browser"]}),
    );
    assert_eq!(who.as_array().unwrap().len(), 1, "{who}");
    assert!(who[0][0].as_str().unwrap().starts_with("v_"), "{who}");
    assert!(who[0][2].as_str().unwrap().contains("Chrome"), "{who}");
}

#[test]
fn script_size_do_not_track_and_cors() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "site");
    let server = Server::start(dir.path(), &[]);
    let http = client();

    // The script: at most 2 KB gzipped, served gzipped when asked.
    let raw = http
        .get(format!("{}/t.js", server.url))
        .header("accept-encoding", "identity")
        .send()
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert!(
        raw.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/javascript")
    );
    let script = raw.bytes().unwrap();
    let gz = common::gzip(&script);
    assert!(gz.len() <= 2048, "t.js is {} bytes gzipped", gz.len());
    assert!(!String::from_utf8_lossy(&script).contains("cookie"));

    // Do-Not-Track and Global Privacy Control: answered, not stored.
    let hit = json!({"k": p.write_key, "n": "pageview", "u": "https://site.example/"}).to_string();
    for header in ["dnt", "sec-gpc"] {
        let r = http
            .post(format!("{}/t/e", server.url))
            .header(header, "1")
            .body(hit.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    assert_eq!(
        rows(
            &server,
            &p,
            json!({"name": "r", "measure": {"op": "count"}})
        ),
        json!([[0]])
    );
    // Without: stored, with a visitor id that is the same for the same browser and address.
    for _ in 0..2 {
        let r = http
            .post(format!("{}/t/e", server.url))
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            )
            .body(hit.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let visitors = rows(
        &server,
        &p,
        json!({"name": "r", "measure": {"op": "unique_users"}}),
    );
    assert_eq!(visitors, json!([[1]]));
    // Bad hits name the field.
    let r = http
        .post(format!("{}/t/e", server.url))
        .body(json!({"k": p.write_key, "n": 3}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["field"], "n");
    let r = http
        .post(format!("{}/t/e", server.url))
        .body(json!({"k": "tw_nope", "n": "x"}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    // CORS: preflights of ingest endpoints are allowed from any origin; query endpoints are not.
    for path in ["/t/e", "/v1/events", "/v1/batch", "/e/"] {
        let r = http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", server.url))
            .header("origin", "https://site.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
    }
    let r = http
        .post(format!("{}/v1/query", server.url))
        .header("origin", "https://site.example")
        .bearer_auth(&p.read_key)
        .json(&json!({"time_range": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}, "rules": [{"name": "r", "measure": {"op": "count"}}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn behind_a_trusted_proxy_the_address_is_the_one_the_proxy_appended() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "site");
    let server = Server::start(dir.path(), &["--trust-proxy"]);
    let hit = json!({"k": p.write_key, "n": "pageview", "u": "https://site.example/"}).to_string();
    let r = client()
        .post(format!("{}/t/e", server.url))
        // The client claims 203.0.113.9; the proxy appended what it saw.
        .header("x-forwarded-for", "203.0.113.9, 198.51.100.77")
        .body(hit)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        rows(
            &server,
            &p,
            json!({"name": "r", "measure": {"op": "count"}, "group_by": ["context.ip"]})
        ),
        json!([["198.51.100.0", 1]])
    );
}
