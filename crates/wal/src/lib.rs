//! Tally's write-ahead log: an append-only, checksummed log of opaque byte payloads, kept as a
//! series of segment files in one directory.
//!
//! The ingest path appends each accepted batch with [`Wal::append`], makes it durable with
//! [`Wal::sync`] before acknowledging it, and after a restart gets every acknowledged entry
//! back from [`Wal::open`]. Once the entries of closed segments have been persisted elsewhere,
//! [`Wal::remove_segments_through`] deletes those segments. [`Wal::read_all`] reads a log
//! without touching it, e.g. from a CLI tool while the server runs.
//!
//! ```
//! use tally_wal::{Wal, WalConfig};
//!
//! # fn main() -> Result<(), tally_wal::WalError> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("wal");
//! let (mut wal, replayed) = Wal::open(WalConfig::new(&dir))?;
//! assert!(replayed.is_empty());
//! let last = wal.append(&[b"first", b"second"])?;
//! wal.sync()?; // both entries are durable from here on
//! assert_eq!(last, 2);
//! drop(wal);
//!
//! let (wal, replayed) = Wal::open(WalConfig::new(&dir))?;
//! assert_eq!(replayed.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2]);
//! assert_eq!(replayed[1].payload, b"second");
//! assert_eq!(wal.last_sequence(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # File format
//!
//! Segment `id` (a `u64`, increasing from 1) is the file `{id:020}.wal`, e.g.
//! `00000000000000000001.wal`; other files in the directory are ignored. All integers are
//! little-endian. A segment is a 16-byte header followed by entry frames:
//!
//! ```text
//! header: magic b"TWAL" | format version: u32 = 1 | first sequence: u64
//! frame:  payload length: u32 | checksum: u32 | payload
//! ```
//!
//! * The checksum is CRC-32C (Castagnoli) over the 4 length bytes followed by the payload.
//!   Including the length means zero-filled space never decodes as a run of empty entries (the
//!   CRC-32C of nothing is 0).
//! * A payload is at most [`MAX_ENTRY_BYTES`] (64 MiB); empty payloads are allowed.
//! * Every entry has a sequence number: the first entry of a segment has the header's first
//!   sequence, the following ones count up by one. Sequences start at 1 and continue across
//!   segments and restarts, so each segment starts after the last entry of the one before it
//!   (later, if [`WalConfig::first_sequence_at_least`] asks for it); overlapping ranges are
//!   corruption.
//! * Only the last segment is ever written to, and only by appending. A segment is closed by
//!   rotation (explicit, or automatic once it exceeds [`WalConfig::segment_max_bytes`]) and by
//!   reopening the log: [`Wal::open`] never appends to a segment that already existed.
//!
//! # Durability contract
//!
//! * An entry whose [`Wal::append`] was followed by a successful [`Wal::sync`] (or by a
//!   [`Wal::rotate`], which syncs) is acknowledged: every later [`Wal::open`] and
//!   [`Wal::read_all`] returns it exactly once, in sequence order, with its sequence number and
//!   its payload byte for byte, until its segment is removed. This holds across process crashes
//!   and power loss, given a file system that honours `fdatasync`/`fsync`.
//! * Entries appended but not yet synced may or may not survive a crash; those that do are a
//!   complete, in-order continuation of the acknowledged ones (a torn write at the end of the
//!   last segment is detected by its frame checksum and truncated away by [`Wal::open`]), never
//!   a damaged or reordered entry. The sequence numbers of lost entries are handed out again.
//! * Closed segments are always fully durable: a segment is synced before the next one is
//!   created. Damage inside a closed segment is therefore never treated as a torn write:
//!   [`Wal::open`] fails with [`WalError::Corrupt`] instead of silently dropping data.
//! * What [`Wal::open`] replays, including unsynced entries that survived, is synced before it
//!   returns, so it never disappears later.
//! * After a failed write or sync the `Wal` is poisoned ([`WalError::Poisoned`]) and must be
//!   reopened: whether the failed bytes reached the disk is unknown.
//! * Sequence numbers and segment ids are derived from the files that exist. A caller that
//!   removes every segment and must still never reuse a sequence or id passes its own
//!   high-water marks as [`WalConfig::first_sequence_at_least`] and
//!   [`WalConfig::first_segment_id_at_least`].
//!
//! The log never interprets, compresses or deduplicates payloads: it stores the bytes it is
//! given. Every [`Wal::open`] replays every entry still in the log, so the caller skips what it
//! has already processed (by sequence number or segment id).

mod error;
mod format;
mod segment;
mod wal;

pub use error::WalError;
pub use format::MAX_ENTRY_BYTES;
pub use wal::{DEFAULT_SEGMENT_MAX_BYTES, ReplayedEntry, SegmentId, SegmentInfo, Wal, WalConfig};
