//! The web UI end to end, in real headless Chromium driven over WebDriver (Debian's `chromium`
//! and `chromedriver`, installed by `tests/clients/setup.sh`): sign in with a read key, the live
//! overview agrees with `POST /v1/query` and updates without a reload, a query built in the
//! explorer is pinned to a dashboard and is still there after a reload, a layout change is
//! saved, a share link shows the dashboard read-only and stops working once revoked; funnels,
//! retention and a report's run history render.
//!
//! Screenshots of the main pages are saved as test artifacts in `$TALLY_ARTIFACTS/ui` (default
//! `target/test-artifacts/ui`).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Duration as Days, TimeZone, Utc};
use common::{Project, Server, create_project};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// `chromedriver` on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        common::test_env_dir();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // The browser's clock zone: the UI asks for "today" in it.
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (tests/clients/setup.sh installs chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while common::client()
            .get(format!("{url}/status"))
            .send()
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1360,1000", "--lang=en-US", "--hide-scrollbars"]
        }
    });
    let caps = caps.as_object().cloned().expect("an object");
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("TALLY_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts"))
        .join("ui");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

async fn screenshot(c: &Client, name: &str) {
    // Let charts finish drawing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let png = c.screenshot().await.expect("a screenshot");
    let path = artifacts().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

async fn find(c: &Client, css: &str) -> Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("`{css}` did not appear: {e}"))
}

/// Waits until `css` matches an element whose `attr` satisfies `ok`; returns the value.
async fn wait_attr(c: &Client, css: &str, attr: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await
            && let Ok(Some(v)) = el.attr(attr).await
        {
            if ok(&v) {
                return v;
            }
            last = Some(v);
        }
        assert!(
            Instant::now() < deadline,
            "`{css}` [{attr}] never became right (last {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `css` matches an element whose text satisfies `ok`; returns the text. The page
/// may re-render the element between finding and reading it: that counts as "not yet".
async fn wait_text(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await
            && let Ok(text) = el.text().await
        {
            if ok(&text) {
                return text;
            }
            last = Some(text);
        }
        assert!(
            Instant::now() < deadline,
            "`{css}` never showed the right text (last {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn set_select(c: &Client, css: &str, value: &str) {
    find(c, css)
        .await
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let el = find(c, css).await;
    el.clear().await.expect("clear");
    el.send_keys(text).await.expect("type");
}

const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
];
const PAGES: [&str; 5] = ["/", "/pricing", "/docs", "/blog/launch", "/signup"];
const COUNTRIES: [&str; 4] = ["DE", "US", "FR", "BR"];
const REFERRERS: [&str; 3] = [
    "https://www.google.com/",
    "https://news.ycombinator.com/",
    "",
];

/// A week of a small product's events, ending a minute ago: page views, and a signup → login →
/// purchase funnel for some persons.
fn week_of_events(now: DateTime<Utc>) -> Vec<Value> {
    let mut events = Vec::new();
    let mut n: u64 = 7;
    let mut next = |m: u64| {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (n >> 33) % m
    };
    for p in 0..48u64 {
        let person = format!("person-{p}");
        let day = p % 7;
        // At least ten minutes ago, and inside the past seven days however late it is.
        let start = now - Days::days(day as i64) - Days::minutes(10 + next(300) as i64);
        let start = start.max(midnight(now) - Days::days(6) + Days::minutes(1));
        let agent = AGENTS[(p % 3) as usize];
        let country = COUNTRIES[(p % 4) as usize];
        let referrer = REFERRERS[next(3) as usize];
        for v in 0..(2 + next(5)) {
            let page = PAGES[next(PAGES.len() as u64) as usize];
            events.push(json!({
                "event": "pageview", "user_id": person,
                "timestamp": (start + Days::minutes(v as i64)).to_rfc3339(),
                "context": {"user_agent": agent, "country": country,
                    "page": {"url": format!("https://shop.example{page}"), "referrer": referrer}}
            }));
        }
        if p % 2 == 0 {
            events.push(json!({"event": "signup", "user_id": person,
                "timestamp": (start + Days::seconds(30)).to_rfc3339(),
                "context": {"user_agent": agent, "country": country}}));
            if p % 4 == 0 {
                events.push(json!({"event": "login", "user_id": person,
                    "timestamp": (start + Days::minutes(1)).to_rfc3339(),
                    "context": {"user_agent": agent, "country": country}}));
            }
            if p % 8 == 0 {
                events.push(json!({"event": "purchase", "user_id": person,
                    "timestamp": (start + Days::minutes(1) + Days::seconds(30)).to_rfc3339(),
                    "properties": {"value": 49}, "context": {"user_agent": agent, "country": country}}));
            }
        }
    }
    // Someone on the site right now.
    events.push(json!({"event": "pageview", "user_id": "person-now",
        "timestamp": (now - Days::seconds(30)).to_rfc3339(),
        "context": {"user_agent": AGENTS[0], "country": "DE",
            "page": {"url": "https://shop.example/pricing"}}}));
    events
}

fn ingest(server: &Server, project: &Project, events: &[Value]) {
    let (status, v) = server.post("/v1/events", &project.write_key, &json!(events));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accepted"], events.len(), "{v}");
}

/// What `POST /v1/query` says for a count and a unique count over `[from, to)`.
fn totals(
    server: &Server,
    project: &Project,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> (u64, u64) {
    let r = server.query(
        &project.read_key,
        &json!({"time_range": {"from": from.to_rfc3339(), "to": to.to_rfc3339()},
                "rules": [{"name": "e", "measure": {"op": "count"}},
                          {"name": "p", "measure": {"op": "unique_users"}}]}),
    );
    (
        r["e"]["rows"][0][0].as_u64().expect("a count"),
        r["p"]["rows"][0][0].as_u64().expect("a count"),
    )
}

fn midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0)
        .single()
        .expect("a midnight")
}

async fn data_value(c: &Client, testid: &str) -> u64 {
    let css = format!("[data-testid={testid}]");
    let v = wait_attr(c, &css, "data-value", |v| v.parse::<u64>().is_ok()).await;
    v.parse().unwrap_or_default()
}

#[test]
fn the_web_ui_end_to_end_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let project = create_project(dir.path(), "shop");
    let server = Server::start(dir.path(), &[]);
    let now = Utc::now();
    let events = week_of_events(now);
    ingest(&server, &project, &events);
    let driver = Driver::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = rt.block_on(browser(&driver));
    let base = server.url.clone();

    // Sign in: a write key is refused with an explanation, the read key is accepted.
    rt.block_on(async {
        c.goto(&format!("{base}/")).await.unwrap();
        type_into(&c, "[data-testid=signin-key]", &project.write_key).await;
        screenshot(&c, "01-sign-in").await;
        find(&c, "[data-testid=signin-submit]")
            .await
            .click()
            .await
            .unwrap();
        let msg = find(&c, ".msg.error").await.text().await.unwrap();
        assert!(msg.contains("write key"), "{msg}");
        type_into(&c, "[data-testid=signin-key]", &project.read_key).await;
        find(&c, "[data-testid=signin-submit]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=today-events]").await;
    });

    // The overview shows what the query API answers.
    let later = Utc::now() + Days::minutes(1);
    let today = totals(&server, &project, midnight(now), later);
    let week_start = midnight(now) - Days::days(i64::from(now.weekday().num_days_from_monday()));
    let week = totals(&server, &project, week_start, later);
    let range = totals(&server, &project, midnight(now) - Days::days(6), later);
    let last5 = totals(&server, &project, now - Days::minutes(5), later);
    rt.block_on(async {
        assert_eq!(data_value(&c, "today-events").await, today.0);
        assert_eq!(data_value(&c, "today-persons").await, today.1);
        assert_eq!(data_value(&c, "week-events").await, week.0);
        assert_eq!(data_value(&c, "week-persons").await, week.1);
        assert_eq!(data_value(&c, "range-events").await, range.0);
        assert_eq!(data_value(&c, "range-persons").await, range.1);
        assert_eq!(data_value(&c, "now-events").await, last5.0);
        assert_eq!(
            events.len() as u64,
            range.0,
            "the week of events is in the range"
        );
        // The live page re-renders on every change: read through `wait_text`.
        wait_text(&c, "[data-testid=top-pages]", |t| t.contains("/pricing")).await;
        wait_text(&c, "[data-testid=top-browsers]", |t| {
            t.contains("Firefox") && t.contains("Chrome")
        })
        .await;
        screenshot(&c, "02-overview").await;
    });

    // Live: new events show up without a reload (server-sent events).
    let before = today.0;
    ingest(
        &server,
        &project,
        &[
            json!({"event": "pageview", "user_id": "late-1", "context": {"page": {"url": "https://shop.example/"}}}),
            json!({"event": "signup", "user_id": "late-1"}),
        ],
    );
    rt.block_on(async {
        let shown = wait_attr(&c, "[data-testid=today-events]", "data-value", |v| {
            v.parse::<u64>().is_ok_and(|n| n == before + 2)
        })
        .await;
        assert_eq!(shown, (before + 2).to_string());
        wait_text(&c, "[data-testid=live-status]", |t| t.starts_with("live")).await;
    });

    // Explore: page views per day by browser as bars, pinned to a new dashboard.
    rt.block_on(async {
        c.goto(&format!("{base}/#/explore")).await.unwrap();
        type_into(&c, "[data-testid=explore-event]", "pageview").await;
        type_into(&c, "[data-testid=explore-breakdown]", "browser").await;
        set_select(&c, "[data-testid=explore-chart]", "bar").await;
        set_select(&c, "[data-testid=explore-range]", "past_7_days").await;
        find(&c, "[data-testid=explore-run]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=explore-result] svg").await;
        let table = find(&c, "[data-testid=result-table]")
            .await
            .text()
            .await
            .unwrap();
        assert!(table.contains("Firefox"), "{table}");
        screenshot(&c, "03-explore").await;
        type_into(&c, "[data-testid=pin-title]", "Page views by browser").await;
        type_into(&c, "[data-testid=pin-new-name]", "Product pulse").await;
        find(&c, "[data-testid=pin-submit]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=pin-done] a")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=widget] svg").await;
    });
    let (status, list) = {
        let r = common::client()
            .get(format!("{base}/v1/dashboards"))
            .bearer_auth(&project.read_key)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    assert_eq!(status, 200);
    let dashboard = list["dashboards"][0].clone();
    assert_eq!(dashboard["name"], "Product pulse");
    assert_eq!(dashboard["widgets"][0]["title"], "Page views by browser");
    assert_eq!(dashboard["widgets"][0]["chart"], "bar");
    assert_eq!(
        dashboard["widgets"][0]["query"]["group_by"],
        json!(["browser"])
    );
    let id = dashboard["id"].as_str().unwrap().to_owned();

    // After a reload the widget is still there; a layout change is saved.
    rt.block_on(async {
        c.refresh().await.unwrap();
        let title = find(&c, "[data-testid=widget] h3")
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(title, "Page views by browser");
        find(&c, "[data-testid=widget] svg").await;
        find(&c, "[data-testid=dashboard-edit]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=widget-wider]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=widget-taller]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=dashboard-save]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=dashboard-saved]").await;
        c.refresh().await.unwrap();
        find(&c, "[data-testid=widget] svg").await;
        screenshot(&c, "04-dashboard").await;
    });
    let saved: Value = common::client()
        .get(format!("{base}/v1/dashboards/{id}"))
        .bearer_auth(&project.read_key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        saved["widgets"][0]["layout"],
        json!({"x": 0, "y": 0, "w": 7, "h": 5})
    );

    // A share link shows the dashboard read-only, without a key, until it is revoked.
    let share_url = rt.block_on(async {
        find(&c, "[data-testid=dashboard-share]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=share-create]")
            .await
            .click()
            .await
            .unwrap();
        let url = find(&c, "[data-testid=share-url]")
            .await
            .prop("value")
            .await
            .unwrap()
            .expect("a share URL");
        assert!(url.starts_with(&format!("{base}/share/tsh_")), "{url}");
        url
    });
    let shared = rt.block_on(browser(&driver));
    rt.block_on(async {
        shared.goto(&share_url).await.unwrap();
        find(&shared, "[data-testid=read-only]").await;
        let name = find(&shared, "[data-testid=dashboard-name]")
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(name, "Product pulse");
        find(&shared, "[data-testid=widget] svg").await;
        assert!(
            shared
                .find(Locator::Css("[data-testid=dashboard-edit]"))
                .await
                .is_err(),
            "no editing on a shared dashboard"
        );
        assert!(
            shared.find(Locator::Css("#nav a")).await.is_err()
                || !shared
                    .find(Locator::Css("#top"))
                    .await
                    .unwrap()
                    .is_displayed()
                    .await
                    .unwrap(),
            "no navigation into the project"
        );
        screenshot(&shared, "05-shared-dashboard").await;
        // Revoke it from the owner's page.
        find(&c, "[data-testid=share-revoke]")
            .await
            .click()
            .await
            .unwrap();
        wait_text(&c, "[data-testid=share-list]", |t| t.contains("revoked")).await;
        shared.refresh().await.unwrap();
        let gone = find(&shared, "[data-testid=share-error]")
            .await
            .text()
            .await
            .unwrap();
        assert!(gone.contains("revoked"), "{gone}");
        shared.close().await.unwrap();
    });
    let token = share_url.rsplit('/').next().unwrap();
    let r = common::client()
        .get(format!("{base}/v1/shared/{token}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Funnels and retention.
    rt.block_on(async {
        c.goto(&format!("{base}/#/funnels")).await.unwrap();
        set_select(&c, "form select", "past_7_days").await;
        find(&c, "[data-testid=funnel-run]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=funnel-result] svg").await;
        let table = find(&c, "[data-testid=result-table]")
            .await
            .text()
            .await
            .unwrap();
        assert!(table.contains("purchase"), "{table}");
        screenshot(&c, "06-funnel").await;
        c.goto(&format!("{base}/#/retention")).await.unwrap();
        find(&c, "[data-testid=retention-run]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=retention-result] svg").await;
        screenshot(&c, "07-retention").await;
    });

    // Reports with their run history.
    let (status, report) = server.post(
        "/v1/reports",
        &project.read_key,
        &json!({"title": "Weekly pulse", "time_range": "past_7_days",
                "sections": [{"title": "Page views", "query": {"event": "pageview", "measure": {"op": "count"}, "interval": "day"}}]}),
    );
    assert_eq!(status, 201, "{report}");
    let rid = report["id"].as_str().unwrap();
    let (status, run) = server.post(
        &format!("/v1/reports/{rid}/send"),
        &project.read_key,
        &json!({}),
    );
    assert_eq!(status, 202, "{run}");
    rt.block_on(async {
        c.goto(&format!("{base}/#/reports")).await.unwrap();
        find(&c, "[data-testid=report-list] a")
            .await
            .click()
            .await
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let runs = wait_text(&c, "[data-testid=run-history]", |t| !t.contains("Loading")).await;
            if runs.contains("succeeded") {
                break;
            }
            assert!(Instant::now() < deadline, "the run did not succeed: {runs}");
            tokio::time::sleep(Duration::from_millis(500)).await;
            c.refresh().await.unwrap();
        }
        find(&c, "[data-testid=report-render]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "iframe.report-frame").await;
        screenshot(&c, "08-report").await;
        c.close().await.unwrap();
    });
}

#[test]
fn the_web_ui_signs_a_user_in_with_an_http_only_session() {
    let dir = tempfile::tempdir().unwrap();
    let project = create_project(dir.path(), "shop");
    common::create_user(
        dir.path(),
        "ana@shop.test",
        "shop",
        "owner",
        "correct horse battery",
    );
    let server = Server::start(dir.path(), &[]);
    let now = Utc::now();
    ingest(&server, &project, &week_of_events(now));
    let later = Utc::now() + Days::minutes(1);
    let today = totals(&server, &project, midnight(now), later);
    let driver = Driver::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = rt.block_on(browser(&driver));
    let base = server.url.clone();
    rt.block_on(async {
        c.goto(&format!("{base}/")).await.unwrap();
        type_into(&c, "[data-testid=signin-email]", "ana@shop.test").await;
        type_into(&c, "[data-testid=signin-password]", "not the password").await;
        find(&c, "[data-testid=account-submit]")
            .await
            .click()
            .await
            .unwrap();
        let msg = find(&c, "[data-testid=account-form] .msg.error")
            .await
            .text()
            .await
            .unwrap();
        assert!(msg.contains("wrong"), "{msg}");
        type_into(&c, "[data-testid=signin-password]", "correct horse battery").await;
        find(&c, "[data-testid=account-submit]")
            .await
            .click()
            .await
            .unwrap();
        assert_eq!(data_value(&c, "today-events").await, today.0);

        // The session is a cookie the page's script cannot read; no key is stored.
        let cookie = c
            .get_named_cookie("tally_session")
            .await
            .expect("the session cookie");
        assert_eq!(cookie.http_only(), Some(true));
        assert!(
            format!("{:?}", cookie.same_site()).contains("Strict"),
            "{cookie:?}"
        );
        assert_eq!(cookie.secure(), Some(true));
        let visible = c.execute("return document.cookie", vec![]).await.unwrap();
        assert!(!visible.to_string().contains("tally_session"), "{visible}");
        let stored = c
            .execute("return localStorage.getItem('tally.projects')", vec![])
            .await
            .unwrap();
        assert!(!stored.to_string().contains("\"key\""), "{stored}");

        // A change (a query is a POST) carries the CSRF token.
        c.goto(&format!("{base}/#/explore")).await.unwrap();
        type_into(&c, "[data-testid=explore-event]", "pageview").await;
        find(&c, "[data-testid=explore-run]")
            .await
            .click()
            .await
            .unwrap();
        find(&c, "[data-testid=explore-result] svg").await;
        screenshot(&c, "10-session-explore").await;

        // Signing out ends the session on the server.
        find(&c, "#sign-out").await.click().await.unwrap();
        find(&c, "[data-testid=account-form]").await;
        let status = c
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch('/v1/session', {credentials: 'same-origin'}).then((r) => done(r.status));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(status, json!(401));
    });
    rt.block_on(c.close()).unwrap();
}
