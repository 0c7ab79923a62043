//! Bad input gets a clear 4xx JSON error, never a panic, and never costs the good events beside it.

mod common;

use common::{Server, create_project, gzip};
use serde_json::{Value, json};

fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

#[test]
fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "bad");
    let server = Server::start(dir.path(), &["--max-body-bytes", "200000"]);
    let ok = json!({"event": "ok", "user_id": "u1", "timestamp": "2026-11-01T10:00:00Z"});

    // Keys.
    let (s, v, _) = server.post_raw("/v1/events", None, serde_json::to_vec(&ok).unwrap(), &[]);
    assert_eq!((s, error_code(&v)), (401, "missing_key"));
    let (s, v) = server.post("/v1/events", "tw_not_a_key", &ok);
    assert_eq!((s, error_code(&v)), (401, "invalid_key"));
    let (s, v) = server.post("/v1/events", &p.read_key, &ok);
    assert_eq!((s, error_code(&v)), (403, "wrong_key_scope"));
    let (s, v) = server.post("/v1/query", &p.write_key, &json!({}));
    assert_eq!((s, error_code(&v)), (403, "wrong_key_scope"));

    // Bodies.
    // (body, headers, expected status, expected code)
    type Case<'a> = (Vec<u8>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (b"{\"event\": ".to_vec(), vec![], 400, "malformed_json"),
        (b"".to_vec(), vec![], 400, "malformed_json"),
        (b"42".to_vec(), vec![], 400, "invalid_body"),
        (b"{\"events\": 3}".to_vec(), vec![], 400, "invalid_body"),
        (
            b"not gzip".to_vec(),
            vec![("content-encoding", "gzip")],
            400,
            "invalid_gzip",
        ),
        (
            b"{}".to_vec(),
            vec![("content-encoding", "br")],
            415,
            "unsupported_encoding",
        ),
        (vec![b' '; 300_000], vec![], 413, "payload_too_large"),
        (
            gzip(&vec![b' '; 30_000_000]),
            vec![("content-encoding", "gzip")],
            413,
            "payload_too_large",
        ),
        (
            "[".repeat(100_000).into_bytes(),
            vec![],
            400,
            "malformed_json",
        ),
    ];
    for (body, headers, status, code) in cases {
        let (s, v, _) = server.post_raw("/v1/events", Some(&p.write_key), body.clone(), &headers);
        assert_eq!(
            (s, error_code(&v)),
            (status, code),
            "body {:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }

    // One bad event among good ones: the good ones are stored, the bad one is named.
    let mut deep = json!(1);
    for _ in 0..20 {
        deep = json!({"x": deep});
    }
    let batch = json!([
        ok,
        {"event": "ok", "user_id": "u2", "timestamp": "yesterday"},
        {"event": "ok", "userid": "u3"},
        {"event": 7, "user_id": "u4"},
        {"event": "ok", "user_id": "u5", "properties": deep},
        {"event": "ok", "user_id": "u6", "properties": {"big": "x".repeat(40_000)}},
        {"event": "ok", "user_id": "u7", "timestamp": "2099-01-01T00:00:00Z"},
        {"event": "ok", "anonymous_id": "a8", "timestamp": "2026-11-01T11:00:00Z"},
        "not an object",
    ]);
    let (s, v) = server.post("/v1/events", &p.write_key, &batch);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted"], json!(2));
    let rejected: Vec<(u64, String, String)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["error"]["code"].as_str().unwrap().to_owned(),
                r["error"]["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |i: u64, code: &str, field: &str| (i, code.to_owned(), field.to_owned());
    assert_eq!(
        rejected,
        vec![
            expect(1, "invalid_timestamp", "timestamp"),
            expect(2, "unknown_field", "userid"),
            expect(3, "wrong_type", "event"),
            expect(4, "too_deep", "properties.x.x.x.x.x.x.x.x.x.x"),
            expect(5, "event_too_large", ""),
            expect(6, "timestamp_out_of_range", "timestamp"),
            expect(8, "wrong_type", ""),
        ]
    );
    for r in v["rejected"].as_array().unwrap() {
        assert!(!r["error"]["message"].as_str().unwrap().is_empty());
    }

    // Only bad events: 400 with the same shape.
    let (s, v) = server.post("/v1/events", &p.write_key, &json!([{"event": "x"}]));
    assert_eq!(
        (s, v["accepted"].clone(), error_code(&v)),
        (400, json!(0), "all_events_rejected")
    );

    // The good ones are there.
    let r = server.query(
        &p.read_key,
        &json!({
            "time_range": {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"},
            "rules": [{"name": "n", "measure": {"op": "count"}}]
        }),
    );
    assert_eq!(r["n"]["rows"], json!([[2]]));

    // Bad queries name the field.
    let bad_queries = [
        (
            json!({"time_range": {"from": "x", "to": "2026-11-02T00:00:00Z"}, "rules": [{"name": "n"}]}),
            "invalid_timestamp",
            "time_range.from",
        ),
        (
            json!({"time_range": {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z", "timezone": "Mars/Base"}, "rules": [{"name": "n"}]}),
            "invalid_timezone",
            "time_range.timezone",
        ),
        (
            json!({"time_range": {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "rules": [{"name": "n", "measure": {"op": "median"}}]}),
            "unknown_measure",
            "rules[0].measure.op",
        ),
        (
            json!({"time_range": {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "rules": [{"name": "n", "filters": [["nope", "eq", 1]]}]}),
            "invalid_field",
            "rules[0].filters[0]",
        ),
        (
            json!({"time_range": {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "rules": [{"name": "n", "bogus": 1}]}),
            "invalid_body",
            "rules[0]",
        ),
        (
            json!({"time_range": {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "rules": [{"name": "n", "interval": "fortnight"}]}),
            "invalid_body",
            "rules[0]",
        ),
        (
            json!({"time_range": {"from": "2020-01-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "rules": [{"name": "n", "interval": "minute"}]}),
            "too_many_buckets",
            "rules[0].interval",
        ),
        (
            json!({"time_range": {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "rules": [{"name": "n", "measure": {"op": "sum", "property": "browser"}}]}),
            "invalid_query",
            "",
        ),
    ];
    for (q, code, field) in bad_queries {
        let (s, v) = server.post("/v1/query", &p.read_key, &q);
        assert_eq!(s, 400, "{q} -> {v}");
        assert_eq!(error_code(&v), code, "{q} -> {v}");
        if !field.is_empty() {
            let got = v["error"]["field"].as_str().unwrap_or_default();
            assert!(got.starts_with(field), "{q} -> {v}");
            if code == "invalid_body" {
                // The path inside the rule is in the message.
                let message = v["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains("fortnight") || message.contains("bogus"),
                    "{v}"
                );
            }
        }
    }

    // Unknown endpoints and methods are JSON too.
    let (s, v) = server.post("/v1/nope", &p.read_key, &json!({}));
    assert_eq!((s, error_code(&v)), (404, "not_found"));
    let r = common::client()
        .get(format!("{}/v1/events", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        error_code(&r.json::<Value>().unwrap()),
        "method_not_allowed"
    );
}
