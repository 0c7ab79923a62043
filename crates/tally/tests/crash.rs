//! Durability: a `tally serve` killed with SIGKILL during sustained ingest loses nothing it
//! acknowledged and stores nothing twice, also when clients retry what was not acknowledged.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, create_project};
use serde_json::{Value, json};

const SENDERS: usize = 4;
const BATCH: usize = 100;

fn batch(sender: usize, seq: usize) -> Value {
    let events: Vec<Value> = (0..BATCH)
        .map(|i| {
            let k = format!("{sender}-{seq}-{i}");
            json!({"event": "tick", "user_id": format!("u{}", i % 17), "message_id": k,
                   "timestamp": "2026-11-20T12:00:00Z", "properties": {"k": k}})
        })
        .collect();
    json!(events)
}

/// Counts per `properties.k` as the query API reports them.
fn stored(server: &Server, key: &str) -> BTreeMap<String, u64> {
    let r = server.query(
        key,
        &json!({
            "time_range": {"from": "2026-11-20T00:00:00Z", "to": "2026-11-21T00:00:00Z"},
            "rules": [{"name": "k", "measure": {"op": "count"}, "group_by": ["properties.k"]}]
        }),
    );
    r["k"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_owned(),
                row[1].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn sigkill_during_ingest_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let p = create_project(dir.path(), "crash");
    // Flush often, so the kill also lands around Parquet writes and WAL truncation.
    let mut server = Server::start(
        dir.path(),
        &["--flush-rows", "2000", "--flush-interval", "1s"],
    );
    let url = server.url.clone();

    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let sent: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (acked, sent, stop, url, key) = (
                acked.clone(),
                sent.clone(),
                stop.clone(),
                url.clone(),
                p.write_key.clone(),
            );
            std::thread::spawn(move || {
                let client = common::client();
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    sent.lock().unwrap().push((s, seq));
                    let r = client
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(&key)
                        .json(&batch(s, seq))
                        .send();
                    match r {
                        Ok(r) if r.status().as_u16() == 200 => {
                            let mut a = acked.lock().unwrap();
                            for i in 0..BATCH {
                                a.insert(format!("{s}-{seq}-{i}"));
                            }
                        }
                        Ok(r) if r.status().as_u16() == 503 => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break, // the server is gone
                    }
                    seq += 1;
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(2500));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 1000,
        "too little was acknowledged before the kill: {}",
        acked.len()
    );

    server.restart_after_kill9();
    let after = stored(&server, &p.read_key);
    let missing: Vec<_> = acked
        .iter()
        .filter(|k| !after.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged events lost: {missing:?} (of {})",
        acked.len()
    );
    let doubled: Vec<_> = after.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(doubled.is_empty(), "events stored twice: {doubled:?}");

    // Clients retry everything that was not acknowledged; message ids keep it exactly once.
    let sent = sent.lock().unwrap().clone();
    for (s, seq) in &sent {
        let (status, _) = server.post("/v1/events", &p.write_key, &batch(*s, *seq));
        assert_eq!(status, 200);
    }
    let all = stored(&server, &p.read_key);
    assert_eq!(all.len(), sent.len() * BATCH);
    assert!(all.values().all(|n| *n == 1), "duplicates after retries");

    // And once more after a second hard kill with nothing in flight.
    server.restart_after_kill9();
    assert_eq!(stored(&server, &p.read_key), all);
}
