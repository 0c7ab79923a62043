//! PostHog's capture endpoints on a real `tally serve`, in the encodings posthog-js sends
//! (`data=` forms, base64, gzip-js) and with its errors. (The official library: `real_clients.rs`.)

mod common;

use base64::Engine;
use common::{Server, client, create_project, gzip};
use serde_json::{Value, json};

fn post(server: &Server, path: &str, body: Vec<u8>, content_type: &str) -> (u16, Value) {
    let r = client()
        .post(format!("{}{path}", server.url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn form(data: &str, extra: &str) -> Vec<u8> {
    let encoded: String = url_encode(data);
    format!("data={encoded}{extra}").into_bytes()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn every_endpoint_and_encoding_posthog_js_uses() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "web");
    let server = Server::start(dir.path(), &[]);
    let ev = |name: &str, uuid: &str| {
        json!({"event": name, "uuid": uuid,
               "properties": {"distinct_id": "visitor", "token": p.write_key, "$is_identified": false,
                              "$current_url": "https://site.example/blog/post", "$pathname": "/blog/post"}})
    };
    let b64 = |v: &Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
    let sends = [
        ("/e/", form(&b64(&json!([ev("$pageview", "00000000-0000-4000-8000-000000000001")])), "&compression=base64"), "application/x-www-form-urlencoded"),
        ("/i/v0/e/", form(&json!([ev("clicked", "00000000-0000-4000-8000-000000000002")]).to_string(), ""), "application/x-www-form-urlencoded"),
        ("/capture/", json!({"api_key": p.write_key, "event": "single", "distinct_id": "visitor", "properties": {"$is_identified": false}}).to_string().into_bytes(), "application/json"),
        ("/batch", json!({"api_key": p.write_key, "batch": [ev("batched", "00000000-0000-4000-8000-000000000003")]}).to_string().into_bytes(), "application/json"),
    ];
    for (path, body, ct) in sends {
        let (status, v) = post(&server, path, body, ct);
        assert_eq!(status, 200, "{path}: {v}");
        assert_eq!(v["status"], 1);
    }
    // gzip-js: the body is gzip, said by the query string.
    let (status, v) = post(
        &server,
        "/e/?compression=gzip-js&ver=1.200.0",
        gzip(
            json!([ev("zipped", "00000000-0000-4000-8000-000000000004")])
                .to_string()
                .as_bytes(),
        ),
        "text/plain",
    );
    assert_eq!(status, 200, "{v}");
    // The same uuid again is not stored twice.
    let (status, _) = post(
        &server,
        "/batch/",
        json!({"api_key": p.write_key, "batch": [ev("batched", "00000000-0000-4000-8000-000000000003")]}).to_string().into_bytes(),
        "application/json",
    );
    assert_eq!(status, 200);

    let q = json!({"time_range": {"from": "2026-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"},
                   "rules": [{"name": "e", "measure": {"op": "count"}, "group_by": ["event", "anonymous_id", "path"]}]});
    let rows = server.query(&p.read_key, &q)["e"]["rows"].clone();
    let mut got: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {} {}", r[0].as_str().unwrap(), r[1], r[2], r[3]))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            r#"batched "visitor" "/blog/post" 1"#,
            r#"clicked "visitor" "/blog/post" 1"#,
            r#"pageview "visitor" "/blog/post" 1"#,
            r#"single "visitor" null 1"#,
            r#"zipped "visitor" "/blog/post" 1"#,
        ]
    );
}

#[test]
fn bad_requests_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "web");
    let server = Server::start(dir.path(), &[]);
    let j = |v: Value| v.to_string().into_bytes();
    let cases = [
        (j(json!({"event": "x", "distinct_id": "d"})), 401, "api_key"),
        (
            j(json!({"api_key": "nope", "event": "x", "distinct_id": "d"})),
            401,
            "api_key",
        ),
        (
            j(json!({"api_key": p.read_key, "event": "x", "distinct_id": "d"})),
            403,
            "api_key",
        ),
        (
            j(json!({"api_key": p.write_key, "event": "x"})),
            400,
            "batch[0].distinct_id",
        ),
        (b"{oops".to_vec(), 400, "body"),
        (b"data=%%%%".to_vec(), 400, "body"),
    ];
    // An event carrying another key than its request is not filed under the request's project.
    let (status, v) = post(
        &server,
        "/batch/",
        j(json!({"api_key": p.write_key, "batch": [
            {"event": "mine", "distinct_id": "d"},
            {"event": "theirs", "distinct_id": "d", "properties": {"token": "tw_other"}},
        ]})),
        "application/json",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["rejected"][0]["error"]["code"], "key_mismatch");
    for (body, status, field) in cases {
        let (got, v) = post(&server, "/capture/", body.clone(), "application/json");
        assert_eq!(got, status, "{}: {v}", String::from_utf8_lossy(&body));
        assert_eq!(v["error"]["field"], field, "{v}");
    }
}
