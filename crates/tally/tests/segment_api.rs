//! Segment's HTTP Tracking API on a real `tally serve`: authentication as Segment's libraries send
//! it, every call, `messageId` de-duplication, `sentAt` clock-skew correction, gzip, and Segment's
//! limits with their 400 answers. (The official libraries themselves: `real_clients.rs`.)

mod common;

use base64::Engine;
use common::{Server, client, create_project, gzip};
use serde_json::{Value, json};

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

fn send(server: &Server, path: &str, auth: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = client().post(format!("{}{path}", server.url)).json(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn count(server: &Server, key: &str, rule: Value) -> Value {
    let q = json!({
        "time_range": {"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"},
        "rules": [rule],
    });
    let name = q["rules"][0]["name"].as_str().unwrap().to_owned();
    server.query(key, &q)[name]["rows"].clone()
}

#[test]
fn every_call_with_segment_authentication_limits_and_deduplication() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let server = Server::start(dir.path(), &[]);
    let header = basic(&p.write_key);
    let auth = Some(header.as_str());

    // One call per endpoint, Basic auth.
    let calls = [
        (
            "/v1/identify",
            json!({"userId": "u1", "anonymousId": "a1", "traits": {"plan": "pro"}, "messageId": "m-identify"}),
        ),
        (
            "/v1/track",
            json!({"userId": "u1", "event": "Order Completed", "properties": {"revenue": 30}, "messageId": "m-track", "timestamp": "2026-11-20T10:00:00Z"}),
        ),
        (
            "/v1/page",
            json!({"anonymousId": "a1", "name": "Home", "properties": {"url": "https://shop.example/?utm_source=news", "referrer": "https://www.google.com/"}, "messageId": "m-page"}),
        ),
        (
            "/v1/screen",
            json!({"userId": "u1", "name": "Settings", "messageId": "m-screen"}),
        ),
        (
            "/v1/group",
            json!({"userId": "u1", "groupId": "acme", "traits": {"seats": 12}, "messageId": "m-group"}),
        ),
        (
            "/v1/alias",
            json!({"userId": "u1", "previousId": "old-id", "messageId": "m-alias"}),
        ),
    ];
    for (path, body) in &calls {
        let (status, v) = send(&server, path, auth, body);
        assert_eq!(status, 200, "{path}: {v}");
        assert_eq!(v["success"], true);
    }
    // The write key in the body instead (a batch, with batch-level sentAt and context).
    let batch = json!({
        "writeKey": p.write_key,
        "sentAt": "2026-11-20T12:00:00Z",
        "context": {"library": {"name": "test", "version": "1"}},
        "batch": [
            {"type": "track", "userId": "u2", "event": "Signed Up", "messageId": "b1",
             "timestamp": "2026-11-20T11:59:00Z"},
            {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m-track",
             "timestamp": "2026-11-20T10:00:00Z"},
        ],
    });
    let (status, v) = send(&server, "/v1/batch", None, &batch);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accepted"], 2);
    // gzip.
    let (status, v, _) = server.post_raw(
        "/v1/batch",
        None,
        gzip(
            json!({"batch": [{"type": "track", "anonymousId": "a9", "event": "Zipped", "messageId": "z1"}]})
                .to_string()
                .as_bytes(),
        ),
        &[
            ("authorization", header.as_str()),
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
    );
    assert_eq!(status, 200, "{v}");

    // Each call arrived once: the re-sent `m-track` was de-duplicated.
    let by_event = count(
        &server,
        &p.read_key,
        json!({"name": "e", "measure": {"op": "count"}, "group_by": ["event"]}),
    );
    let mut rows: Vec<(String, i64)> = by_event
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("$alias".to_owned(), 1),
            ("$group".to_owned(), 1),
            ("$identify".to_owned(), 1),
            ("Order Completed".to_owned(), 1),
            ("Signed Up".to_owned(), 1),
            ("Zipped".to_owned(), 1),
            ("pageview".to_owned(), 1),
            ("screen".to_owned(), 1),
        ]
    );
    // sentAt corrected the client's clock: "11:59 by a clock that said 12:00 when it sent" is
    // about a minute before it arrived, not on 2026-11-20.
    let now = chrono::Utc::now();
    let recent = json!({
        "time_range": {
            "from": (now - chrono::Duration::minutes(10)).to_rfc3339(),
            "to": (now - chrono::Duration::seconds(50)).to_rfc3339(),
        },
        "rules": [{"name": "s", "event": "Signed Up", "measure": {"op": "count"}}],
    });
    assert_eq!(
        server.query(&p.read_key, &recent)["s"]["rows"],
        json!([[1]])
    );
    // The page call filled the page columns; a1, u1 and old-id are one person.
    let pages = count(
        &server,
        &p.read_key,
        json!({"name": "p", "event": "pageview", "measure": {"op": "count"},
               "group_by": ["utm_source", "referrer_channel", "person_id"]}),
    );
    assert_eq!(pages, json!([["news", "organic_search", "u1", 1]]));
    let persons = count(
        &server,
        &p.read_key,
        json!({"name": "u", "measure": {"op": "unique_users"}}),
    );
    assert_eq!(persons, json!([[3]]), "u1 (with a1 and old-id), u2, a9");

    let http = client();
    let person: Value = http
        .get(format!("{}/v1/persons/old-id", server.url))
        .bearer_auth(&p.read_key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(person["id"], "u1");
    // The group call tied the user to its group.
    assert_eq!(
        person["properties"],
        json!({"plan": "pro", "$groups": {"group": "acme"}})
    );
    let group: Value = http
        .get(format!("{}/v1/groups/group/acme", server.url))
        .bearer_auth(&p.read_key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(group["properties"], json!({"seats": 12}));
}

#[test]
fn bad_requests_get_segment_s_400s_and_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "shop");
    let server = Server::start(dir.path(), &[]);
    let header = basic(&p.write_key);
    let auth = Some(header.as_str());

    // No key, an unknown key, a read key.
    let track = json!({"userId": "u", "event": "x"});
    assert_eq!(send(&server, "/v1/track", None, &track).0, 401);
    let (status, v) = send(&server, "/v1/track", Some(&basic("nope")), &track);
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (401, Some("authorization"))
    );
    assert_eq!(
        send(&server, "/v1/track", Some(&basic(&p.read_key)), &track).0,
        403
    );
    let (status, v) = send(
        &server,
        "/v1/track",
        None,
        &json!({"writeKey": "wrong", "userId": "u", "event": "x"}),
    );
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (401, Some("writeKey"))
    );

    // 32 KB per message, 500 KB per batch.
    let big = json!({"userId": "u", "event": "x", "properties": {"blob": "x".repeat(33 * 1024)}});
    let (status, v) = send(&server, "/v1/track", auth, &big);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("payload_too_large")),
        "{v}"
    );
    let many: Vec<Value> = (0..40)
        .map(|i| json!({"type": "track", "userId": "u", "event": "x", "messageId": format!("m{i}"), "properties": {"blob": "y".repeat(15 * 1024)}}))
        .collect();
    let (status, v) = send(&server, "/v1/batch", auth, &json!({"batch": many}));
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("body")),
        "{v}"
    );

    // A small gzip body that inflates past 500 KB is refused without inflating all of it.
    let bomb = json!({"batch": [{"type": "track", "userId": "u", "event": "x", "properties": {"b": "0".repeat(4 << 20)}}]});
    let (status, v, _) = server.post_raw(
        "/v1/batch",
        None,
        gzip(bomb.to_string().as_bytes()),
        &[
            ("authorization", header.as_str()),
            ("content-encoding", "gzip"),
        ],
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("payload_too_large")),
        "{v}"
    );

    // In a batch, a bad message is named and its good neighbours are kept.
    let (status, v) = send(
        &server,
        "/v1/batch",
        auth,
        &json!({"batch": [
            {"type": "track", "userId": "u", "event": "kept", "messageId": "k1"},
            {"type": "track", "userId": "u", "messageId": "k2"},
            {"type": "track", "userId": "u", "event": "huge", "properties": {"b": "z".repeat(33 * 1024)}},
        ]}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["rejected"][0]["index"], 1);
    assert_eq!(v["rejected"][0]["error"]["field"], "event");
    assert_eq!(v["rejected"][1]["error"]["code"], "message_too_large");
    // A request where nothing is acceptable is a 400 naming the first problem.
    let (status, v) = send(
        &server,
        "/v1/batch",
        auth,
        &json!({"batch": [{"type": "wave", "userId": "u"}]}),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["field"], "batch[0].type");
    let (status, v) = send(&server, "/v1/batch", auth, &json!({"messages": []}));
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("batch")),
        "{v}"
    );
    let (status, v) = send(&server, "/v1/alias", auth, &json!({"userId": "u"}));
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("previousId")),
        "{v}"
    );
    let (status, v, _) = server.post_raw(
        "/v1/track",
        None,
        b"{not json".to_vec(),
        &[("authorization", header.as_str())],
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("malformed_json")),
        "{v}"
    );

    let kept = count(
        &server,
        &p.read_key,
        json!({"name": "k", "measure": {"op": "count"}, "group_by": ["event"]}),
    );
    assert_eq!(kept, json!([["kept", 1]]));
}
