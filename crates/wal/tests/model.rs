//! Model-based test: random operations against a real `Wal` in a temporary directory, checked
//! against a model of what must be in the log.
//!
//! Crashes are simulated by dropping the `Wal` without syncing and then damaging the last
//! segment file the way a power loss could: cutting it anywhere after its last synced byte, or
//! leaving garbage or zeros after its end. Closed segments are never damaged: the `Wal`
//! guarantees they are durable.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;
use tally_wal::{ReplayedEntry, SegmentId, Wal, WalConfig};

#[derive(Debug, Clone)]
enum Tear {
    None,
    /// Cut the last segment at a point between its last synced byte and its end, chosen by
    /// the seed.
    Truncate(u64),
    Garbage(Vec<u8>),
    Zeros(usize),
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Sync,
    Rotate,
    /// Remove through the closed segment picked by this index (modulo their number).
    RemoveThrough(usize),
    /// Drop without syncing, damage the last segment, reopen. `hints` passes the caller's
    /// high-water marks as lower bounds for ids and sequences.
    Crash {
        tear: Tear,
        hints: bool,
    },
    /// Sync, drop, reopen.
    Reopen,
}

fn tear_strategy() -> impl Strategy<Value = Tear> {
    prop_oneof![
        1 => Just(Tear::None),
        3 => any::<u64>().prop_map(Tear::Truncate),
        1 => vec(any::<u8>(), 1..64).prop_map(Tear::Garbage),
        1 => (1usize..5000).prop_map(Tear::Zeros),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => vec(vec(any::<u8>(), 0..2000), 0..5).prop_map(Op::Append),
        2 => Just(Op::Sync),
        1 => Just(Op::Rotate),
        1 => any::<usize>().prop_map(Op::RemoveThrough),
        2 => (tear_strategy(), any::<bool>()).prop_map(|(tear, hints)| Op::Crash { tear, hints }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    segment: SegmentId,
    sequence: u64,
    payload: Vec<u8>,
}

impl From<ReplayedEntry> for Entry {
    fn from(e: ReplayedEntry) -> Self {
        Entry {
            segment: e.segment,
            sequence: e.sequence,
            payload: e.payload,
        }
    }
}

struct Harness {
    dir: tempfile::TempDir,
    segment_max_bytes: u64,
    wal: Option<Wal>,
    /// Every entry appended (or replayed) and not removed, in order.
    entries: Vec<Entry>,
    /// How many leading `entries` are acknowledged: synced, in a closed segment, or replayed.
    acked: usize,
    /// Bytes of each segment known to be durable.
    durable_len: BTreeMap<SegmentId, u64>,
    /// Highest segment id ever seen and highest sequence ever acknowledged.
    max_seen_id: SegmentId,
    max_acked_sequence: u64,
    /// The id the next new segment must at least have.
    min_next_id: SegmentId,
}

impl Harness {
    fn new(segment_max_bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut harness = Harness {
            dir,
            segment_max_bytes,
            wal: None,
            entries: Vec::new(),
            acked: 0,
            durable_len: BTreeMap::new(),
            max_seen_id: 0,
            max_acked_sequence: 0,
            min_next_id: 1,
        };
        let replayed = harness.open(false);
        assert!(replayed.is_empty());
        harness
    }

    fn wal(&mut self) -> &mut Wal {
        self.wal.as_mut().expect("open")
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn segment_files(&self) -> Vec<(SegmentId, std::path::PathBuf)> {
        let mut files: Vec<_> = fs::read_dir(self.dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                let id = name.strip_suffix(".wal")?.parse().ok()?;
                Some((id, p))
            })
            .collect();
        files.sort();
        files
    }

    fn open(&mut self, hints: bool) -> Vec<Entry> {
        assert!(self.wal.is_none());
        let highest_file = self.segment_files().last().map_or(0, |(id, _)| *id);
        let mut config = WalConfig::new(self.dir());
        config.segment_max_bytes = self.segment_max_bytes;
        if hints {
            config.first_segment_id_at_least = self.max_seen_id + 1;
            config.first_sequence_at_least = self.max_acked_sequence + 1;
            self.min_next_id = self.min_next_id.max(highest_file + 1);
        } else {
            // Only the files tell the Wal where to continue.
            self.min_next_id = highest_file + 1;
        }
        let (wal, replayed) = Wal::open(config).unwrap();
        if hints {
            assert!(wal.last_sequence() >= self.max_acked_sequence);
        }
        assert_eq!(wal.current_segment(), None);
        assert!(wal.segments().iter().all(|s| !s.is_current));
        self.wal = Some(wal);
        replayed.into_iter().map(Entry::from).collect()
    }

    /// Drops the Wal (flushing but not syncing), applies `tear`, reopens and checks the replay.
    fn crash(&mut self, tear: &Tear, hints: bool) {
        let wal = self.wal.take().unwrap();
        drop(wal);

        if let Some((id, path)) = self.segment_files().pop() {
            let len = fs::metadata(&path).unwrap().len();
            let durable = self.durable_len.get(&id).copied().unwrap_or(0);
            assert!(durable <= len);
            match tear {
                Tear::None => {}
                Tear::Truncate(seed) => {
                    let cut = durable + seed % (len - durable + 1);
                    OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .unwrap()
                        .set_len(cut)
                        .unwrap();
                }
                Tear::Garbage(bytes) => append_to(&path, bytes),
                Tear::Zeros(n) => append_to(&path, &vec![0; *n]),
            }
        }

        let replayed = self.open(hints);
        let sequences: Vec<u64> = replayed.iter().map(|e| e.sequence).collect();
        assert!(
            sequences.windows(2).all(|w| w[0] < w[1]),
            "sequences not increasing: {sequences:?}"
        );
        assert!(
            replayed.len() >= self.acked,
            "lost acknowledged entries: replayed {} of {}",
            replayed.len(),
            self.acked
        );
        assert_eq!(
            replayed[..self.acked],
            self.entries[..self.acked],
            "acknowledged entries differ"
        );
        // Whatever unacknowledged entries survived are an intact, in-order continuation.
        let rest = &replayed[self.acked..];
        assert!(rest.len() <= self.entries.len() - self.acked);
        assert_eq!(
            rest,
            &self.entries[self.acked..self.acked + rest.len()],
            "unacknowledged entries damaged"
        );
        if matches!(tear, Tear::None) {
            assert_eq!(replayed, self.entries, "a clean drop loses nothing");
        }

        self.entries = replayed;
        self.acked = self.entries.len();
        self.durable_len = self
            .wal()
            .segments()
            .iter()
            .map(|s| (s.id, s.size_bytes))
            .collect();
        if let Some(last) = self.entries.last() {
            assert!(self.wal.as_ref().unwrap().last_sequence() >= last.sequence);
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(payloads) => {
                let before = self.wal().last_sequence();
                let previous_segment = self.wal().current_segment();
                let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                let last = self.wal().append(&refs).unwrap();
                assert_eq!(last, before + payloads.len() as u64);
                if payloads.is_empty() {
                    assert_eq!(self.wal().current_segment(), previous_segment);
                    return;
                }
                let segment = self.wal().current_segment().unwrap();
                if Some(segment) != previous_segment {
                    assert!(
                        segment >= self.min_next_id,
                        "segment id {segment} went backwards (expected >= {})",
                        self.min_next_id
                    );
                    self.min_next_id = segment + 1;
                }
                for (sequence, payload) in (before + 1..).zip(payloads) {
                    self.entries.push(Entry {
                        segment,
                        sequence,
                        payload: payload.clone(),
                    });
                }
            }
            Op::Sync => {
                self.wal().sync().unwrap();
                self.acked = self.entries.len();
                self.check_read_all_complete();
            }
            Op::Rotate => {
                let previous_segment = self.wal().current_segment();
                let closed = self.wal().rotate().unwrap();
                if previous_segment.is_some() {
                    assert_eq!(closed, previous_segment);
                }
                assert_eq!(self.wal().current_segment(), None);
                self.acked = self.entries.len();
                self.check_read_all_complete();
            }
            Op::RemoveThrough(pick) => {
                let closed: Vec<SegmentId> = self
                    .wal()
                    .segments()
                    .iter()
                    .filter(|s| !s.is_current)
                    .map(|s| s.id)
                    .collect();
                let through = if closed.is_empty() {
                    0
                } else {
                    closed[pick % closed.len()]
                };
                let expected = closed.iter().filter(|&&id| id <= through).count();
                let current = self.wal().current_segment();
                assert_eq!(
                    self.wal().remove_segments_through(through).unwrap(),
                    expected
                );
                let before = self.entries.len();
                self.entries
                    .retain(|e| e.segment > through || Some(e.segment) == current);
                let removed = before - self.entries.len();
                assert!(removed <= self.acked, "removed unacknowledged entries");
                self.acked -= removed;
                self.durable_len.retain(|&id, _| id > through);
                for (id, _) in self.segment_files() {
                    assert!(id > through, "segment {id} still on disk");
                }
            }
            Op::Crash { tear, hints } => self.crash(tear, *hints),
            Op::Reopen => {
                self.wal().sync().unwrap();
                self.acked = self.entries.len();
                self.crash(&Tear::None, false);
            }
        }
        self.after_op();
    }

    /// Invariants that hold after every operation.
    fn after_op(&mut self) {
        let segments = self.wal().segments();
        assert!(segments.windows(2).all(|w| w[0].id < w[1].id));
        assert!(segments.iter().rev().skip(1).all(|s| !s.is_current));
        // Closed segments are durable: their entries are acknowledged.
        let mut closed_entries = 0;
        for segment in &segments {
            let in_model: Vec<&Entry> = self
                .entries
                .iter()
                .filter(|e| e.segment == segment.id)
                .collect();
            assert_eq!(in_model.len() as u64, segment.entry_count, "{segment:?}");
            if let Some(first) = in_model.first() {
                assert_eq!(first.sequence, segment.first_sequence, "{segment:?}");
            }
            if !segment.is_current {
                closed_entries += in_model.len();
                self.durable_len.insert(segment.id, segment.size_bytes);
            }
            self.max_seen_id = self.max_seen_id.max(segment.id);
        }
        assert_eq!(
            segments.iter().map(|s| s.entry_count).sum::<u64>(),
            self.entries.len() as u64
        );
        self.acked = self.acked.max(closed_entries);
        if self.acked > 0 {
            self.max_acked_sequence = self
                .max_acked_sequence
                .max(self.entries[self.acked - 1].sequence);
        }
        if let Some(current) = segments.iter().find(|s| s.is_current)
            && self.acked == self.entries.len()
        {
            self.durable_len.insert(current.id, current.size_bytes);
        }

        // A concurrent reader sees an in-order prefix containing at least the closed segments.
        let read: Vec<Entry> = Wal::read_all(self.dir())
            .unwrap()
            .into_iter()
            .map(Entry::from)
            .collect();
        assert!(read.len() >= closed_entries);
        assert!(read.len() <= self.entries.len());
        assert_eq!(read, self.entries[..read.len()]);
    }

    fn check_read_all_complete(&self) {
        let read: Vec<Entry> = Wal::read_all(self.dir())
            .unwrap()
            .into_iter()
            .map(Entry::from)
            .collect();
        assert_eq!(read, self.entries);
    }
}

fn append_to(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn wal_matches_model(
        segment_max_bytes in prop_oneof![Just(0u64), 16u64..8000],
        ops in vec(op_strategy(), 1..40),
    ) {
        let mut harness = Harness::new(segment_max_bytes);
        for op in &ops {
            harness.apply(op);
        }
        // Whatever happened, a final sync and reopen returns exactly the model.
        harness.apply(&Op::Reopen);
        let expected = harness.entries.clone();
        harness.wal = None;
        let read: Vec<Entry> =
            Wal::read_all(harness.dir()).unwrap().into_iter().map(Entry::from).collect();
        prop_assert_eq!(read, expected);
    }
}
