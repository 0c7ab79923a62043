//! Dashboards, share links and the overview against a real `tally serve`, over HTTP and the
//! CLI: CRUD with field-named 400s, widgets as JSON, SVG and PNG with the numbers `/v1/query`
//! gives for the same range, share links that open one dashboard until revoked, isolation
//! between projects, the overview and its server-sent events, and the web UI's assets.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use common::{BIN, Project, Server, client, create_project};
use serde_json::{Value, json};

/// Three days of events ending an hour ago: page views by two browsers, signups, purchases.
fn ingest(server: &Server, p: &Project) -> usize {
    let now = Utc::now();
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    ];
    let mut events = Vec::new();
    for i in 0..30i64 {
        let at = now - Span::hours(1 + i * 2);
        let user = format!("u{}", i % 7);
        events.push(json!({"event": "pageview", "user_id": user, "timestamp": at.to_rfc3339(),
            "context": {"user_agent": agents[(i % 2) as usize], "country": if i % 3 == 0 { "DE" } else { "US" },
                        "page": {"url": format!("https://shop.test/p{}", i % 4),
                                 "referrer": "https://www.google.com/"}}}));
        if i % 3 == 0 {
            events.push(json!({"event": "signup", "user_id": user,
                "timestamp": (at + Span::minutes(1)).to_rfc3339()}));
        }
        if i % 6 == 0 {
            events.push(json!({"event": "purchase", "user_id": user,
                "timestamp": (at + Span::minutes(2)).to_rfc3339(), "properties": {"value": 10 + i}}));
        }
    }
    let (status, v) = server.post("/v1/events", &p.write_key, &json!(events));
    assert_eq!(status, 200, "{v}");
    events.len()
}

fn get(server: &Server, path: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let mut r = client().get(format!("{}{path}", server.url));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().expect("request")
}

fn get_json(server: &Server, path: &str, key: Option<&str>) -> (u16, Value) {
    let r = get(server, path, key);
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn send(
    server: &Server,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", server.url);
    let mut r = match method {
        "PUT" => client().put(url),
        "DELETE" => client().delete(url),
        _ => client().post(url),
    }
    .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(b);
    }
    let r = r.send().expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn dashboard() -> Value {
    json!({
        "name": "Product pulse", "description": "The numbers we look at", "time_range": "past_30_days",
        "timezone": "Europe/Berlin",
        "widgets": [
            {"title": "Page views", "chart": "line",
             "query": {"event": "pageview", "measure": {"op": "count"}, "interval": "day"},
             "layout": {"x": 0, "y": 0, "w": 12, "h": 4}},
            {"title": "Signups", "chart": "number", "query": {"event": "signup", "measure": {"op": "count"}}},
            {"title": "Browsers", "chart": "donut",
             "query": {"measure": {"op": "unique_users"}, "group_by": ["browser"]}},
            {"title": "Checkout", "chart": "funnel", "time_range": "past_7_days",
             "query": {"kind": "funnel", "steps": [{"event": "signup"}, {"event": "purchase"}], "window": "1d"}}
        ]
    })
}

/// What `/v1/query` answers for a widget's query over the range the widget was computed for.
fn query_for(server: &Server, key: &str, data: &Value) -> Value {
    let range = &data["time_range"];
    let name = data["query"]["name"]
        .as_str()
        .expect("a query name")
        .to_owned();
    let r = server.query(
        key,
        &json!({"time_range": {"from": range["from"], "to": range["to"], "timezone": range["timezone"]},
                "rules": [data["query"]]}),
    );
    r[&name].clone()
}

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("dashboards")
        .args(args)
        .args(["--project", "shop", "--data-dir"])
        .arg(dir)
        .output()
        .expect("run tally dashboards")
}

#[test]
fn dashboards_widgets_and_share_links_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let other = create_project(dir.path(), "other");
    let server = Server::start(dir.path(), &[]);
    ingest(&server, &p);

    // Create: ids, query names and free spots are filled in.
    let (status, saved) = server.post("/v1/dashboards", &p.read_key, &dashboard());
    assert_eq!(status, 201, "{saved}");
    let id = saved["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("dsh_"), "{id}");
    let ids: Vec<&str> = saved["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["w1", "w2", "w3", "w4"]);
    assert_eq!(saved["widgets"][0]["query"]["name"], "w1");
    assert_eq!(
        saved["widgets"][1]["layout"],
        json!({"x": 0, "y": 4, "w": 6, "h": 4})
    );
    assert_eq!(
        saved["widgets"][2]["layout"],
        json!({"x": 6, "y": 4, "w": 6, "h": 4})
    );
    let (status, list) = get_json(&server, "/v1/dashboards", Some(&p.read_key));
    assert_eq!(status, 200);
    assert_eq!(list["dashboards"].as_array().unwrap().len(), 1);
    assert_eq!(list["dashboards"][0]["name"], "Product pulse");

    // Every widget's numbers are what /v1/query answers for the same query and range.
    for w in ["w1", "w2", "w3", "w4"] {
        let (status, data) = get_json(
            &server,
            &format!("/v1/dashboards/{id}/widgets/{w}"),
            Some(&p.read_key),
        );
        assert_eq!(status, 200, "{data}");
        assert_eq!(
            data["result"],
            query_for(&server, &p.read_key, &data),
            "{w}"
        );
        assert_eq!(data["time_range"]["timezone"], "Europe/Berlin");
    }
    let (_, number) = get_json(
        &server,
        &format!("/v1/dashboards/{id}/widgets/w2"),
        Some(&p.read_key),
    );
    assert_eq!(number["query"]["compare"], "previous_period");
    assert_eq!(number["result"]["rows"][0][0], 10, "{number}");
    assert_eq!(number["time_range"]["relative"], "past_30_days");
    let (_, funnel) = get_json(
        &server,
        &format!("/v1/dashboards/{id}/widgets/w4"),
        Some(&p.read_key),
    );
    assert_eq!(
        funnel["time_range"]["relative"], "past_7_days",
        "its own range"
    );
    let (_, short) = get_json(
        &server,
        &format!("/v1/dashboards/{id}/widgets/w1?range=today"),
        Some(&p.read_key),
    );
    assert_eq!(short["time_range"]["relative"], "today");

    // As images.
    let svg = get(
        &server,
        &format!("/v1/dashboards/{id}/widgets/w1?format=svg&width=600&height=300"),
        Some(&p.read_key),
    );
    assert_eq!(svg.status().as_u16(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let text = svg.text().unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("width=\"600\""),
        "{text:.200}"
    );
    let png = get(
        &server,
        &format!("/v1/dashboards/{id}/widgets/w3?format=png&scale=1"),
        Some(&p.read_key),
    );
    assert_eq!(png.headers()["content-type"], "image/png");
    assert!(png.bytes().unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));

    // A widget not saved yet, and one pinned to the dashboard.
    let widget = json!({"title": "Revenue", "chart": "number", "time_range": "past_7_days",
        "query": {"event": "purchase", "measure": {"op": "sum", "property": "properties.value"}}});
    let (status, preview) = server.post("/v1/widgets/preview?format=json", &p.read_key, &widget);
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["result"], query_for(&server, &p.read_key, &preview));
    let (status, pinned) = server.post(
        &format!("/v1/dashboards/{id}/widgets"),
        &p.read_key,
        &widget,
    );
    assert_eq!(status, 201, "{pinned}");
    assert_eq!(pinned["widgets"][4]["id"], "w5");
    // Beside the funnel, which took the first free spot below the others.
    assert_eq!(
        pinned["widgets"][4]["layout"],
        json!({"x": 6, "y": 8, "w": 6, "h": 4})
    );

    // Bad input names the field and changes nothing.
    let bad = |path: &str, body: Value, field: &str| {
        let (status, v) = server.post(path, &p.read_key, &body);
        assert_eq!(status, 400, "{path} {body}: {v}");
        assert_eq!(v["error"]["field"], field, "{v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    };
    bad("/v1/dashboards", json!({"name": ""}), "name");
    bad(
        "/v1/dashboards",
        json!({"name": "x", "colour": "red"}),
        "colour",
    );
    bad(
        "/v1/dashboards",
        json!({"name": "x", "time_range": "fortnight"}),
        "time_range",
    );
    bad(
        "/v1/dashboards",
        json!({"name": "x", "widgets": [{"title": "t", "chart": "line", "query": {"measure": {"op": "count"}}}]}),
        "widgets[0].chart",
    );
    bad(
        "/v1/dashboards",
        json!({"name": "x", "widgets": [{"title": "t", "chart": "pie",
            "query": {"measure": {"op": "count"}, "group_by": ["browser"]}, "layout": {"x": 10, "y": 0, "w": 4, "h": 4}}]}),
        "widgets[0].layout",
    );
    bad(
        "/v1/dashboards",
        json!({"name": "x", "widgets": [{"title": "t", "chart": "number", "query": {"measure": {"op": "median"}}}]}),
        "widgets[0].query.measure.op",
    );
    bad(
        &format!("/v1/dashboards/{id}/widgets"),
        json!({"title": "t", "chart": "funnel", "query": {"measure": {"op": "count"}}}),
        "chart",
    );
    bad(
        "/v1/widgets/preview",
        json!({"title": "t", "chart": "hbar", "query": {"measure": {"op": "count"}, "interval": "day"}}),
        "chart",
    );
    let (status, v) = get_json(
        &server,
        &format!("/v1/dashboards/{id}/widgets/w1?format=gif"),
        Some(&p.read_key),
    );
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("format"))
    );
    let (status, v) = get_json(
        &server,
        &format!("/v1/dashboards/{id}/widgets/w1?range=someday"),
        Some(&p.read_key),
    );
    assert_eq!((status, v["error"]["field"].as_str()), (400, Some("range")));
    let (status, _) = get_json(
        &server,
        &format!("/v1/dashboards/{id}/widgets/w99"),
        Some(&p.read_key),
    );
    assert_eq!(status, 404);
    let (status, v, _) = server.post_raw(
        "/v1/dashboards",
        Some(&p.read_key),
        b"{\"name\": ".to_vec(),
        &[],
    );
    assert_eq!(status, 400, "{v}");
    let (_, still) = get_json(&server, &format!("/v1/dashboards/{id}"), Some(&p.read_key));
    assert_eq!(still["widgets"].as_array().unwrap().len(), 5);

    // Another project's key, a write key and no key see nothing of it.
    for path in [
        format!("/v1/dashboards/{id}"),
        format!("/v1/dashboards/{id}/widgets/w1"),
        format!("/v1/dashboards/{id}/shares"),
    ] {
        let (status, v) = get_json(&server, &path, Some(&other.read_key));
        assert_eq!(status, 404, "{path}: {v}");
        assert!(!v.to_string().contains("Product pulse"));
        assert_eq!(
            get_json(&server, &path, Some(&p.write_key)).0,
            403,
            "{path}"
        );
        assert_eq!(get_json(&server, &path, None).0, 401, "{path}");
    }
    let (_, theirs) = get_json(&server, "/v1/dashboards", Some(&other.read_key));
    assert_eq!(theirs["dashboards"], json!([]));
    assert_eq!(
        send(
            &server,
            "PUT",
            &format!("/v1/dashboards/{id}"),
            &other.read_key,
            Some(&dashboard())
        )
        .0,
        404
    );
    assert_eq!(
        send(
            &server,
            "DELETE",
            &format!("/v1/dashboards/{id}"),
            &other.read_key,
            None
        )
        .0,
        404
    );
    assert_eq!(
        send(
            &server,
            "POST",
            &format!("/v1/dashboards/{id}/shares"),
            &other.read_key,
            None
        )
        .0,
        404
    );

    // A share link opens this dashboard, without a key, until it is revoked.
    let (status, share) = send(
        &server,
        "POST",
        &format!("/v1/dashboards/{id}/shares"),
        &p.read_key,
        None,
    );
    assert_eq!(status, 201, "{share}");
    let token = share["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tsh_") && token.len() == 36, "{token}");
    assert_eq!(share["path"], format!("/share/{token}"));
    let (status, shared) = get_json(&server, &format!("/v1/shared/{token}"), None);
    assert_eq!(status, 200, "{shared}");
    assert_eq!(
        (shared["name"].as_str(), shared["read_only"].as_bool()),
        (Some("Product pulse"), Some(true))
    );
    assert!(
        shared.get("id").is_none() && !shared.to_string().contains(&p.id),
        "{shared}"
    );
    let (status, via_share) = get_json(&server, &format!("/v1/shared/{token}/widgets/w2"), None);
    assert_eq!(status, 200);
    assert_eq!(via_share["result"], number["result"]);
    let page = get(&server, &format!("/share/{token}"), None);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let (_, listed) = get_json(
        &server,
        &format!("/v1/dashboards/{id}/shares"),
        Some(&p.read_key),
    );
    assert_eq!(listed["shares"].as_array().unwrap().len(), 1);
    assert!(
        !listed.to_string().contains(&token),
        "tokens are never listed"
    );
    let share_id = share["id"].as_str().unwrap();
    assert_eq!(
        send(
            &server,
            "DELETE",
            &format!("/v1/dashboards/{id}/shares/{share_id}"),
            &other.read_key,
            None
        )
        .0,
        404
    );
    assert_eq!(
        get_json(&server, &format!("/v1/shared/{token}"), None).0,
        200,
        "still open"
    );
    assert_eq!(
        send(
            &server,
            "DELETE",
            &format!("/v1/dashboards/{id}/shares/{share_id}"),
            &p.read_key,
            None
        )
        .0,
        204
    );
    assert_eq!(
        get_json(&server, &format!("/v1/shared/{token}"), None).0,
        404
    );
    assert_eq!(
        get_json(&server, &format!("/v1/shared/{token}/widgets/w1"), None).0,
        404
    );
    assert_eq!(get_json(&server, "/v1/shared/tsh_guessed", None).0, 404);

    // Replace keeps the ids sent back; delete removes the dashboard and its links.
    let mut def = still.clone();
    for k in ["id", "created_at", "updated_at"] {
        def.as_object_mut().unwrap().remove(k);
    }
    def["name"] = json!("Renamed");
    def["widgets"].as_array_mut().unwrap().remove(0);
    let (status, replaced) = send(
        &server,
        "PUT",
        &format!("/v1/dashboards/{id}"),
        &p.read_key,
        Some(&def),
    );
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["name"], "Renamed");
    assert_eq!(replaced["widgets"][0]["id"], "w2");
    let (_, second) = send(
        &server,
        "POST",
        &format!("/v1/dashboards/{id}/shares"),
        &p.read_key,
        None,
    );
    assert_eq!(
        send(
            &server,
            "DELETE",
            &format!("/v1/dashboards/{id}"),
            &p.read_key,
            None
        )
        .0,
        204
    );
    assert_eq!(
        get_json(&server, &format!("/v1/dashboards/{id}"), Some(&p.read_key)).0,
        404
    );
    let second = second["token"].as_str().unwrap();
    assert_eq!(
        get_json(&server, &format!("/v1/shared/{second}"), None).0,
        404
    );
}

#[test]
fn dashboards_from_the_command_line_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let server = Server::start(dir.path(), &[]);
    ingest(&server, &p);
    let file = dir.path().join("dash.json");
    std::fs::write(&file, dashboard().to_string()).unwrap();

    let out = cli(dir.path(), &["create", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // The server sees it at once.
    let (status, data) = get_json(
        &server,
        &format!("/v1/dashboards/{id}/widgets/w2"),
        Some(&p.read_key),
    );
    assert_eq!(status, 200, "{data}");
    let out = cli(dir.path(), &["list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    let out = cli(dir.path(), &["list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Product pulse"));
    let out = cli(dir.path(), &["show", &id]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["widgets"].as_array().unwrap().len(), 4);

    // A share link made by the CLI works on the server until the CLI revokes it.
    let out = cli(dir.path(), &["share", &id, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let share: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = share["token"].as_str().unwrap();
    assert_eq!(
        get_json(&server, &format!("/v1/shared/{token}"), None).0,
        200
    );
    let out = cli(dir.path(), &["shares", &id]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(token));
    let out = cli(dir.path(), &["revoke", &id, share["id"].as_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        get_json(&server, &format!("/v1/shared/{token}"), None).0,
        404
    );

    // Bad input: a message naming the field, and a non-zero exit.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        json!({"name": "x", "widgets": [{"title": "t", "chart": "line", "query": {"measure": {"op": "count"}}}]})
            .to_string(),
    )
    .unwrap();
    let out = cli(dir.path(), &["update", &id, bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("widgets[0].chart"), "{err}");
    let out = cli(dir.path(), &["show", "dsh_nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = cli(dir.path(), &["delete", &id]);
    assert!(out.status.success());
    assert_eq!(
        get_json(&server, &format!("/v1/dashboards/{id}"), Some(&p.read_key)).0,
        404
    );
}

/// Reads one server-sent event (`event:` and `data:` lines up to a blank line).
fn next_event(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> (String, Value) {
    let (mut event, mut data) = (String::new(), String::new());
    for line in lines {
        let line = line.expect("the stream stays open");
        if line.is_empty() {
            if !data.is_empty() {
                return (event, serde_json::from_str(&data).expect("JSON data"));
            }
            continue;
        }
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_owned();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        }
    }
    panic!("the stream ended");
}

#[test]
fn the_overview_and_its_live_stream() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let server = Server::start(dir.path(), &[]);
    let sent = ingest(&server, &p);

    let (status, o) = get_json(
        &server,
        "/v1/overview?range=past_7_days&timezone=Europe/Berlin",
        Some(&p.read_key),
    );
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["range"]["relative"], "past_7_days");
    assert_eq!(o["range"]["events"], sent, "{o}");
    let r = server.query(
        &p.read_key,
        &json!({"time_range": {"from": o["range"]["from"], "to": o["range"]["to"], "timezone": "Europe/Berlin"},
                "rules": [{"name": "e", "measure": {"op": "count"}},
                          {"name": "p", "measure": {"op": "unique_users"}},
                          {"name": "pages", "event": "pageview", "measure": {"op": "count"}, "group_by": ["path"]},
                          {"name": "series", "measure": {"op": "count"}, "interval": "day"}]}),
    );
    assert_eq!(o["range"]["events"], r["e"]["rows"][0][0]);
    assert_eq!(o["range"]["persons"], r["p"]["rows"][0][0]);
    assert_eq!(o["range"]["persons"], 7);
    let mut pages: Vec<(String, u64)> = r["pages"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_owned(),
                row[1].as_u64().unwrap(),
            )
        })
        .collect();
    pages.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown: Vec<(String, u64)> = o["top"]["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["value"].as_str().unwrap().to_owned(),
                row["events"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown, pages);
    assert_eq!(o["series"]["interval"], "day");
    let series_total: u64 = o["series"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_u64().unwrap())
        .sum();
    assert_eq!(series_total, sent as u64);
    assert_eq!(o["top"]["referrers"][0]["value"], "google.com");
    assert_eq!(o["top"]["browsers"].as_array().unwrap().len(), 2);
    let (_, today) = get_json(&server, "/v1/overview?range=today", Some(&p.read_key));
    assert_eq!(today["series"]["interval"], "hour");
    let share: f64 = o["top"]["browsers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["share"].as_f64().unwrap())
        .sum();
    assert!((share - 1.0).abs() < 1e-9, "{}", o["top"]["browsers"]);

    // Every project keeps the overview's rollups without saving a rule: the overview's rules
    // come to be answered from them, with the same numbers.
    let counted = json!({"time_range": {"from": o["range"]["from"], "to": o["range"]["to"], "timezone": "Europe/Berlin"},
                         "rules": [{"name": "e", "measure": {"op": "count"}},
                                   {"name": "p", "measure": {"op": "unique_users"}},
                                   {"name": "pages", "measure": {"op": "count"}, "group_by": ["path"], "limit": 8,
                                    "filters": [["path", "exists"], ["event", "eq", "pageview"]]}]});
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = server.post("/v1/query", &p.read_key, &counted);
        assert_eq!(status, 200, "{v}");
        let rolled: Vec<&str> = v["from_rollups"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if ["e", "p", "pages"].iter().all(|n| rolled.contains(n)) {
            assert_eq!(v["results"]["e"]["rows"][0][0], o["range"]["events"]);
            assert_eq!(v["results"]["p"]["rows"][0][0], 7);
            break;
        }
        assert!(Instant::now() < deadline, "no rollup answers: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, again) = get_json(
        &server,
        "/v1/overview?range=past_7_days&timezone=Europe/Berlin",
        Some(&p.read_key),
    );
    // (`from` and `to` move on if an hour ended meanwhile; no event is that recent.)
    for figure in ["events", "persons", "previous_events", "previous_persons"] {
        assert_eq!(again["range"][figure], o["range"][figure], "{figure}");
    }
    assert_eq!((&again["top"], &again["series"]), (&o["top"], &o["series"]));
    // They are not saved rules, and saved rules may not take their names.
    let (_, rules) = get_json(&server, "/v1/rules", Some(&p.read_key));
    assert_eq!(rules["rules"], json!([]));
    let (status, v) = server.post(
        "/v1/rules",
        &p.read_key,
        &json!({"name": "$overview.events", "measure": {"op": "count"}}),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_name")),
        "{v}"
    );

    // Bad parameters name themselves; other keys see nothing.
    let (status, v) = get_json(&server, "/v1/overview?range=fortnight", Some(&p.read_key));
    assert_eq!((status, v["error"]["field"].as_str()), (400, Some("range")));
    let (status, v) = get_json(
        &server,
        "/v1/overview?timezone=Mars/Base",
        Some(&p.read_key),
    );
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("timezone"))
    );
    assert_eq!(get_json(&server, "/v1/overview", Some(&p.write_key)).0, 403);
    assert_eq!(get_json(&server, "/v1/overview/stream", None).0, 401);

    // The stream sends the overview at once, then again when a figure changes.
    let stream = client()
        .get(format!(
            "{}/v1/overview/stream?range=past_7_days",
            server.url
        ))
        .bearer_auth(&p.read_key)
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut lines = BufReader::new(stream).lines();
    let (event, first) = next_event(&mut lines);
    assert_eq!(event, "overview");
    let before = first["today"]["events"].as_u64().unwrap();
    let (status, _) = server.post(
        "/v1/events",
        &p.write_key,
        &json!({"event": "signup", "user_id": "new-1"}),
    );
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (event, next) = next_event(&mut lines);
        assert_eq!(event, "overview", "{next}");
        if next["today"]["events"].as_u64() == Some(before + 1) {
            assert_eq!(next["now"]["persons"].as_u64().unwrap(), 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new event never arrived: {next}"
        );
    }

    // The sign-in answer, and the web UI's assets.
    let (status, who) = get_json(&server, "/v1/project", Some(&p.write_key));
    assert_eq!(status, 200);
    assert_eq!(
        (who["name"].as_str(), who["scope"].as_str()),
        (Some("shop"), Some("write"))
    );
    assert_eq!(get_json(&server, "/v1/project", Some("tr_nope")).0, 401);
    let index = get(&server, "/", None);
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        index.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(index.text().unwrap().contains("/ui/app.js"));
    let js = get(&server, "/ui/app.js", None);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.text().unwrap().contains("/v1/overview/stream"));
}
