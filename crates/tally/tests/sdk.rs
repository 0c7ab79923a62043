//! The Rust SDK (`tally-sdk`) against a real `tally serve`: every call arrives exactly once,
//! also when the server is killed mid-stream and started again (the SDK retries with the same
//! message ids; Tally de-duplicates), and memory stays bounded while it is down.

mod common;

use std::time::Duration;

use common::{Server, create_project};
use serde_json::json;
use tally_sdk::{Config, Event, EventManager, Identify};

fn config(url: &str, key: &str) -> Config {
    let mut c = Config::new(url, key);
    c.max_batch = 25;
    c.flush_interval = Duration::from_millis(50);
    c.min_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(200);
    c.request_timeout = Duration::from_secs(5);
    c
}

fn count(server: &Server, key: &str, rule: serde_json::Value) -> serde_json::Value {
    let q = json!({"time_range": {"from": "2026-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"},
                   "rules": [rule]});
    server.query(key, &q)["r"]["rows"].clone()
}

/// The SDK runs on its own runtime; the test thread plays the service (whose calls never block)
/// and uses the blocking test helpers.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_call_arrives_once_across_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "svc");
    let mut server = Server::start(dir.path(), &[]);
    let rt = runtime();
    let tally = {
        let _in_runtime = rt.enter();
        EventManager::start(config(&server.url, &p.write_key)).unwrap()
    };

    tally.identify(
        Identify::new("user-1")
            .anonymous_id("anon-1")
            .trait_("plan", "pro"),
    );
    for i in 0..300 {
        tally.track(
            Event::new("job.done")
                .user_id(format!("user-{}", i % 10))
                .property("i", i),
        );
        if i == 100 {
            // Killed mid-stream: a batch may be stored but not answered; its retry re-sends the
            // same message ids, which Tally recognizes.
            server.kill9();
        }
        if i == 200 {
            server.start_again();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    tally.track(
        Event::action("video", "play")
            .anonymous_id("anon-1")
            .label("intro")
            .value(30.0),
    );
    tally.alias("legacy-1", "user-1");
    tally.track(
        Event::new("job.done")
            .user_id("legacy-1")
            .property("i", 300),
    );
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), tally.flush()).await })
        .expect("flush finished")
        .unwrap();
    let stats = tally.stats();
    assert_eq!(
        (stats.dropped, stats.rejected, stats.queued),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.retries > 0, "the restart made it retry: {stats:?}");

    let server = &server;
    assert_eq!(
        count(
            server,
            &p.read_key,
            json!({"name": "r", "event": "job.done", "measure": {"op": "count"}})
        ),
        json!([[301]])
    );
    assert_eq!(
        count(
            server,
            &p.read_key,
            json!({"name": "r", "event": "job.done", "measure": {"op": "sum", "property": "properties.i"}})
        ),
        json!([[(0..=300).sum::<i64>() as f64]])
    );
    // user-1, anon-1 and legacy-1 are one person; user-0 and user-2..9 the others.
    assert_eq!(
        count(
            server,
            &p.read_key,
            json!({"name": "r", "measure": {"op": "unique_users"}})
        ),
        json!([[10]])
    );
    assert_eq!(
        count(
            server,
            &p.read_key,
            json!({"name": "r", "event": "play", "measure": {"op": "sum", "property": "value"}, "group_by": ["category", "label", "person_id"]})
        ),
        json!([["video", "intro", "user-1", 30.0]])
    );
    rt.block_on(tally.shutdown(Duration::from_secs(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_costs_bounded_memory_and_counted_drops() {
    // Nothing listens here.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = config(&format!("http://127.0.0.1:{port}"), "tw_nothing");
    c.max_queue = 100;
    let tally = EventManager::start(c).unwrap();
    for i in 0..1_000 {
        tally.track(Event::new("e").user_id("u").property("i", i));
    }
    let s = tally.stats();
    assert!(s.queued <= 100, "{s:?}");
    // At most one batch is out of the queue, being retried.
    assert!(s.dropped >= 1_000 - 100 - 25, "{s:?}");
    tally.shutdown(Duration::from_millis(300)).await;
    let s = tally.stats();
    assert_eq!(s.sent, 0);
    assert_eq!(s.queued, 0);
    assert_eq!(
        s.dropped + s.rejected,
        1_000,
        "everything is accounted for: {s:?}"
    );
    // After shutdown, calls are dropped and counted, never block.
    tally.track(Event::new("late").user_id("u"));
    assert_eq!(tally.stats().dropped, s.dropped + 1);
}
