//! Sessions: a person's events belong to one session until 30 minutes pass without an event.
//!
//! Assignment happens at ingest, in arrival order, from a per-person map of the last event time.
//! A session's id is a hash of (project, person, the session's first event time), so it is the same
//! whichever process computes it. Known limits, as in Plausible and Matomo: an event that arrives
//! more than the timeout out of order starts a new session; a restart forgets open sessions, so a
//! session spanning a restart is split in two.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use parking_lot::Mutex;
use tally_core::ProjectId;

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Open {
    last_ts: i64,
    session_id: i64,
}

/// Assigns session ids. Memory is bounded by the persons active within the timeout (older
/// entries are swept when a shard grows past its share of `max_persons`).
#[derive(Debug)]
pub struct SessionTracker {
    shards: Vec<Mutex<HashMap<(ProjectId, String), Open>>>,
    timeout_us: i64,
    max_per_shard: usize,
    hasher: std::hash::RandomState,
}

impl SessionTracker {
    pub fn new(timeout: std::time::Duration, max_persons: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            timeout_us: timeout.as_micros() as i64,
            max_per_shard: (max_persons / SHARDS).max(16),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Forgets the open sessions of `persons` (an erased person starts afresh).
    pub fn forget(&self, project: &ProjectId, persons: &[String]) {
        for shard in &self.shards {
            shard
                .lock()
                .retain(|(p, person), _| p != project || !persons.contains(person));
        }
    }

    /// The session of `person`'s event at `ts_us`.
    pub fn assign(&self, project: &ProjectId, person: &str, ts_us: i64) -> i64 {
        let mut h = self.hasher.build_hasher();
        h.write(project.as_str().as_bytes());
        h.write(person.as_bytes());
        let shard = &self.shards[(h.finish() as usize) % SHARDS];
        let mut map = shard.lock();
        let key = (project.clone(), person.to_owned());
        if let Some(open) = map.get_mut(&key)
            && (ts_us - open.last_ts).abs() <= self.timeout_us
        {
            open.last_ts = open.last_ts.max(ts_us);
            return open.session_id;
        }
        let session_id = session_id(project, person, ts_us);
        if map.len() >= self.max_per_shard {
            let newest = map
                .values()
                .map(|o| o.last_ts)
                .max()
                .unwrap_or(ts_us)
                .max(ts_us);
            map.retain(|_, o| newest - o.last_ts <= self.timeout_us);
            if map.len() >= self.max_per_shard {
                // Still full of active persons: forget the least recent half.
                let mut times: Vec<i64> = map.values().map(|o| o.last_ts).collect();
                times.sort_unstable();
                let cut = times[times.len() / 2];
                map.retain(|_, o| o.last_ts > cut);
            }
        }
        map.insert(
            key,
            Open {
                last_ts: ts_us,
                session_id,
            },
        );
        session_id
    }
}

/// A stable 63-bit id: FNV-1a of the project, the person and the start time.
fn session_id(project: &ProjectId, person: &str, start_us: i64) -> i64 {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    eat(project.as_str().as_bytes());
    eat(&[0]);
    eat(person.as_bytes());
    eat(&[0]);
    eat(&start_us.to_le_bytes());
    (h >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIN: i64 = 60_000_000;

    #[test]
    fn thirty_minutes_of_inactivity_split_sessions() {
        let t = SessionTracker::new(Duration::from_secs(1800), 1000);
        let p = ProjectId::generate();
        let a = t.assign(&p, "u", 0);
        assert_eq!(t.assign(&p, "u", 29 * MIN), a);
        assert_eq!(
            t.assign(&p, "u", 59 * MIN),
            a,
            "measured from the last event"
        );
        let b = t.assign(&p, "u", 90 * MIN);
        assert_ne!(a, b);
        assert_ne!(t.assign(&p, "v", 90 * MIN), b, "per person");
        assert_eq!(b, session_id(&p, "u", 90 * MIN), "deterministic");
    }

    #[test]
    fn bounded() {
        let t = SessionTracker::new(Duration::from_secs(1800), 16 * 16);
        let p = ProjectId::generate();
        for i in 0..10_000 {
            t.assign(&p, &format!("u{i}"), i * MIN);
        }
        let total: usize = t.shards.iter().map(|s| s.lock().len()).sum();
        assert!(total <= 16 * 16, "{total}");
    }
}
