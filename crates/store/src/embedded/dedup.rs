//! `message_id` idempotency: ids seen within a window of receive time are remembered; an event
//! whose id was seen is not stored again. The window (default 24 hours, as client retries come within minutes or hours) bounds the memory used.

use std::collections::{HashSet, VecDeque};

use tally_core::ProjectId;

#[derive(Debug)]
pub(crate) struct DedupIndex {
    seen: HashSet<u128>,
    order: VecDeque<(i64, u128)>,
    window_us: i64,
}

impl DedupIndex {
    pub(crate) fn new(window_us: i64) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            window_us,
        }
    }

    fn key(project: &ProjectId, id: &[u8; 16]) -> u128 {
        u128::from_be_bytes(*id) ^ project_salt(project)
    }

    /// Records `id`; false when it was already there (a duplicate).
    pub(crate) fn insert(&mut self, project: &ProjectId, id: &[u8; 16], received_at: i64) -> bool {
        let k = Self::key(project, id);
        if self.seen.insert(k) {
            self.order.push_back((received_at, k));
            true
        } else {
            false
        }
    }

    pub(crate) fn contains(&self, project: &ProjectId, id: &[u8; 16]) -> bool {
        self.seen.contains(&Self::key(project, id))
    }

    /// Forgets ids received before `now - window`.
    pub(crate) fn expire(&mut self, now_us: i64) {
        let cutoff = now_us - self.window_us;
        while let Some(&(t, k)) = self.order.front() {
            if t >= cutoff {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&k);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

/// A per-project 128-bit value XORed into ids, so equal ids of two projects never collide:
/// 128-bit FNV-1a of the project id, stable across builds and platforms.
fn project_salt(project: &ProjectId) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in project.as_str().bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_window_only() {
        let p = ProjectId::generate();
        let q = ProjectId::generate();
        let mut d = DedupIndex::new(100);
        assert!(d.insert(&p, &[1; 16], 0));
        assert!(!d.insert(&p, &[1; 16], 5));
        assert!(d.insert(&q, &[1; 16], 60));
        d.expire(150);
        assert!(!d.contains(&p, &[1; 16]));
        assert!(d.contains(&q, &[1; 16]));
        assert_eq!(d.len(), 1);
    }
}
