//! The writer: [`Wal`] and the types its API speaks.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::WalError;
use crate::format::{self, FRAME_HEADER_LEN, HEADER_LEN, MAX_ENTRY_BYTES};
use crate::segment::{self, DirHandle, LoadMode};

/// Identifies a segment file (`{id:020}.wal`). Ids only grow: see
/// [`WalConfig::first_segment_id_at_least`].
pub type SegmentId = u64;

/// Default for [`WalConfig::segment_max_bytes`]: 64 MiB.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Capacity of the in-memory buffer in front of the current segment file.
const WRITE_BUFFER_BYTES: usize = 128 * 1024;

/// Where and how a [`Wal`] keeps its segments. Build it with [`WalConfig::new`] and change the
/// public fields as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// Directory holding the segment files; created by [`Wal::open`] if missing. Files whose
    /// names are not segment names are ignored.
    pub dir: PathBuf,
    /// Once an append leaves the current segment larger than this, the next append starts a new
    /// segment (after syncing the old one). A segment therefore exceeds it by at most one
    /// batch. Default [`DEFAULT_SEGMENT_MAX_BYTES`].
    pub segment_max_bytes: u64,
    /// Lower bound for the id of the next segment created (default 1). Ids continue after the
    /// highest segment found in the directory; when every segment has been removed there is
    /// nothing to continue from, so a caller that must never see an id again passes one more
    /// than the highest id it has recorded.
    pub first_segment_id_at_least: SegmentId,
    /// Lower bound for the sequence number of the next entry appended (default 1), for the same
    /// reason: sequences continue after the last entry found, which needs a segment to be found.
    pub first_sequence_at_least: u64,
}

impl WalConfig {
    /// Defaults for a WAL in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            first_segment_id_at_least: 1,
            first_sequence_at_least: 1,
        }
    }
}

/// One entry read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedEntry {
    /// The segment holding it.
    pub segment: SegmentId,
    /// Its sequence number, as returned (for the last entry of its batch) by [`Wal::append`].
    pub sequence: u64,
    /// The bytes appended, unchanged.
    pub payload: Vec<u8>,
}

/// A segment as the [`Wal`] knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub id: SegmentId,
    /// Bytes in the segment, header included (for the current segment: including appends not
    /// yet flushed to the file).
    pub size_bytes: u64,
    /// Sequence number of its first entry (the next sequence, if it has none).
    pub first_sequence: u64,
    /// Number of entries in it.
    pub entry_count: u64,
    /// Whether this is the segment appends currently go to (it may still grow); every other
    /// segment is closed and fully durable.
    pub is_current: bool,
}

impl SegmentInfo {
    /// Sequence number of its last entry, `None` if it has no entries.
    pub fn last_sequence(&self) -> Option<u64> {
        (self.entry_count > 0).then(|| self.first_sequence + self.entry_count - 1)
    }
}

/// The segment appends go to.
#[derive(Debug)]
struct OpenSegment {
    id: SegmentId,
    path: PathBuf,
    writer: BufWriter<File>,
    first_sequence: u64,
    entry_count: u64,
    size_bytes: u64,
    /// Whether something was written since the last fdatasync.
    unsynced: bool,
}

impl OpenSegment {
    fn info(&self, is_current: bool) -> SegmentInfo {
        SegmentInfo {
            id: self.id,
            size_bytes: self.size_bytes,
            first_sequence: self.first_sequence,
            entry_count: self.entry_count,
            is_current,
        }
    }
}

/// A write-ahead log over one directory; see the [crate documentation](crate) for the format
/// and the durability contract.
///
/// A `Wal` is the single writer of its directory (it holds an advisory lock on it until
/// dropped) and takes `&mut self` for every change, so a caller sharing it between tasks wraps
/// it in a mutex or gives it to one task. Readers that must not disturb it use
/// [`Wal::read_all`].
///
/// Dropping a `Wal` writes buffered appends to the file but does not sync them; call
/// [`Wal::sync`] first for durability.
#[derive(Debug)]
pub struct Wal {
    // Declared before `dir` so that the buffered writer is flushed before the lock is released.
    current: Option<OpenSegment>,
    dir: DirHandle,
    dir_path: PathBuf,
    segment_max_bytes: u64,
    /// Closed segments, by increasing id.
    closed: Vec<SegmentInfo>,
    next_sequence: u64,
    next_segment_id: SegmentId,
    last_closed: Option<SegmentId>,
    rotate_on_next_append: bool,
    /// A segment file was created since the directory was last fsynced.
    dir_sync_pending: bool,
    /// A write or sync of the current segment failed.
    poisoned: bool,
}

impl Wal {
    /// Opens the WAL in `config.dir` (creating the directory if missing), validates every
    /// segment and returns the valid entries in order.
    ///
    /// A torn or corrupt tail of the *last* segment (partial frame, checksum mismatch,
    /// zero-filled space) is truncated away, and a last segment whose header was never
    /// completely written is removed, each with a `tracing` warning; the result is synced before
    /// `open` returns, so every replayed entry is durable. Damage in an earlier segment, or a
    /// complete but invalid header anywhere (e.g. a newer format version), is
    /// [`WalError::Corrupt`] and nothing is modified.
    ///
    /// Appends never go to a segment that existed before `open`: the first append creates a new
    /// one. Fails with [`WalError::Locked`] while another `Wal` has the directory open.
    pub fn open(config: WalConfig) -> Result<(Wal, Vec<ReplayedEntry>), WalError> {
        segment::create_dir(&config.dir)?;
        let dir = DirHandle::lock(&config.dir)?;
        let loaded = segment::load(&config.dir, LoadMode::Repair)?;
        dir.sync()?;

        let after_last_entry = loaded
            .segments
            .last()
            .map_or(1, |s| s.first_sequence + s.entry_count);
        let after_highest_id = loaded.highest_id.map_or(1, |id| id.saturating_add(1));
        let wal = Wal {
            current: None,
            dir,
            dir_path: config.dir,
            segment_max_bytes: config.segment_max_bytes,
            last_closed: loaded.segments.last().map(|s| s.id),
            closed: loaded.segments,
            next_sequence: after_last_entry.max(config.first_sequence_at_least).max(1),
            next_segment_id: after_highest_id
                .max(config.first_segment_id_at_least)
                .max(1),
            rotate_on_next_append: false,
            dir_sync_pending: false,
            poisoned: false,
        };
        tracing::debug!(
            dir = %wal.dir_path.display(),
            segments = wal.closed.len(),
            entries = loaded.entries.len(),
            next_sequence = wal.next_sequence,
            next_segment = wal.next_segment_id,
            "opened WAL"
        );
        Ok((wal, loaded.entries))
    }

    /// Returns the valid entries of every segment in `dir`, in order, without modifying
    /// anything; safe to call while a `Wal` is writing to the directory.
    ///
    /// It stops at a torn tail of the last segment (and skips a last segment whose header is
    /// incomplete), so entries being appended concurrently are either wholly present or absent.
    /// Damage anywhere else is [`WalError::Corrupt`]. Segments removed concurrently are left
    /// out together with everything before them.
    pub fn read_all(dir: &Path) -> Result<Vec<ReplayedEntry>, WalError> {
        segment::load(dir, LoadMode::ReadOnly).map(|loaded| loaded.entries)
    }

    /// Appends one entry per payload to the current segment, starting a new segment first if
    /// there is none or the current one is full, and returns the sequence number of the last
    /// one (the entries get consecutive numbers). An empty batch appends nothing and returns
    /// [`Wal::last_sequence`].
    ///
    /// The entries are buffered, not durable: see [`Wal::sync`]. A payload larger than
    /// [`MAX_ENTRY_BYTES`] fails the whole batch with [`WalError::EntryTooLarge`] before anything
    /// is written. A failed write poisons the `Wal` (see [`WalError::Poisoned`]).
    pub fn append(&mut self, payloads: &[&[u8]]) -> Result<u64, WalError> {
        self.check_poisoned()?;
        if payloads.is_empty() {
            return Ok(self.last_sequence());
        }
        if let Some(payload) = payloads.iter().find(|p| p.len() > MAX_ENTRY_BYTES) {
            return Err(WalError::EntryTooLarge {
                len: payload.len(),
                max: MAX_ENTRY_BYTES,
            });
        }
        let count = payloads.len() as u64;
        let next_sequence = self
            .next_sequence
            .checked_add(count)
            .ok_or(WalError::SequenceExhausted)?;

        if self.rotate_on_next_append {
            self.close_current()?;
        }
        if self.current.is_none() {
            self.start_segment()?;
        }
        let current = self
            .current
            .as_mut()
            .expect("a current segment was just ensured");

        let mut written = 0u64;
        let result = payloads.iter().try_for_each(|payload| {
            current
                .writer
                .write_all(&format::encode_frame_header(payload))?;
            current.writer.write_all(payload)?;
            written += (FRAME_HEADER_LEN + payload.len()) as u64;
            Ok(())
        });
        current.unsynced = true;
        if let Err(e) = result {
            self.poisoned = true;
            return Err(WalError::io("append to segment", &current.path, e));
        }
        current.size_bytes += written;
        current.entry_count += count;
        self.next_sequence = next_sequence;
        if current.size_bytes > self.segment_max_bytes {
            self.rotate_on_next_append = true;
        }
        Ok(next_sequence - 1)
    }

    /// Makes everything appended so far durable: flushes the buffer and fdatasyncs the current
    /// segment, and fsyncs the directory if a segment was created since the last sync. Cheap
    /// when there is nothing to sync. A failure poisons the `Wal`.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_poisoned()?;
        if let Some(current) = self.current.as_mut()
            && current.unsynced
        {
            let result = current
                .writer
                .flush()
                .and_then(|()| current.writer.get_ref().sync_data());
            if let Err(e) = result {
                self.poisoned = true;
                return Err(WalError::io("sync segment", &current.path, e));
            }
            current.unsynced = false;
        }
        if self.dir_sync_pending {
            if let Err(e) = self.dir.sync() {
                self.poisoned = true;
                return Err(e);
            }
            self.dir_sync_pending = false;
        }
        Ok(())
    }

    /// Syncs and closes the current segment, if there is one; the next append starts a new
    /// segment. Returns the id of the most recently closed segment (the one just closed, or,
    /// without a current segment, the last one closed before or found by [`Wal::open`]), `None`
    /// if there never was one.
    pub fn rotate(&mut self) -> Result<Option<SegmentId>, WalError> {
        self.check_poisoned()?;
        self.close_current()?;
        Ok(self.last_closed)
    }

    /// Deletes every closed segment with id `<= through` (never the current one) and fsyncs the
    /// directory; returns how many were deleted. Works on a poisoned `Wal` too.
    pub fn remove_segments_through(&mut self, through: SegmentId) -> Result<usize, WalError> {
        let mut removed = 0;
        let mut result = Ok(());
        while let Some(first) = self.closed.first()
            && first.id <= through
        {
            let path = segment::segment_path(&self.dir_path, first.id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(segment = first.id, "WAL segment to remove was already gone");
                }
                Err(e) => {
                    result = Err(WalError::io("remove segment", path, e));
                    break;
                }
            }
            tracing::debug!(segment = first.id, "removed WAL segment");
            self.closed.remove(0);
            removed += 1;
        }
        if removed > 0 {
            self.dir.sync()?;
        }
        result.map(|()| removed)
    }

    /// The closed segments and then the current one, by increasing id.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.closed
            .iter()
            .copied()
            .chain(self.current.as_ref().map(|c| c.info(true)))
            .collect()
    }

    /// Sequence number of the last entry appended or replayed; the next append gets the one
    /// after it. `0` when nothing was ever appended (with the default
    /// [`WalConfig::first_sequence_at_least`]).
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }

    /// The segment appends currently go to; `None` before the first append after
    /// [`Wal::open`] or [`Wal::rotate`].
    pub fn current_segment(&self) -> Option<SegmentId> {
        self.current.as_ref().map(|c| c.id)
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    fn check_poisoned(&self) -> Result<(), WalError> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Syncs the current segment and moves it to the closed ones.
    fn close_current(&mut self) -> Result<(), WalError> {
        if self.current.is_none() {
            self.rotate_on_next_append = false;
            return Ok(());
        }
        self.sync()?;
        let current = self.current.take().expect("checked above");
        let info = current.info(false);
        tracing::debug!(
            segment = info.id,
            entries = info.entry_count,
            bytes = info.size_bytes,
            "closed WAL segment"
        );
        self.closed.push(info);
        self.last_closed = Some(info.id);
        self.rotate_on_next_append = false;
        Ok(())
    }

    fn start_segment(&mut self) -> Result<(), WalError> {
        debug_assert!(self.current.is_none());
        let id = self.next_segment_id;
        // Never retry an id, even if creating it fails.
        self.next_segment_id = id.saturating_add(1);
        let path = segment::segment_path(&self.dir_path, id);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| WalError::io("create segment", &path, e))?;
        self.dir_sync_pending = true;
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
        if let Err(e) = writer.write_all(&format::encode_header(self.next_sequence)) {
            self.poisoned = true;
            return Err(WalError::io("write segment header", path, e));
        }
        tracing::debug!(
            segment = id,
            first_sequence = self.next_sequence,
            "started WAL segment"
        );
        self.current = Some(OpenSegment {
            id,
            path,
            writer,
            first_sequence: self.next_sequence,
            entry_count: 0,
            size_bytes: HEADER_LEN as u64,
            unsynced: true,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write as _;

    use super::*;
    use crate::format::{encode_frame_header, encode_header, segment_file_name};

    fn config(dir: &Path) -> WalConfig {
        WalConfig::new(dir)
    }

    fn open(dir: &Path) -> (Wal, Vec<ReplayedEntry>) {
        Wal::open(config(dir)).expect("open WAL")
    }

    fn payloads(entries: &[ReplayedEntry]) -> Vec<&[u8]> {
        entries.iter().map(|e| e.payload.as_slice()).collect()
    }

    fn sequences(entries: &[ReplayedEntry]) -> Vec<u64> {
        entries.iter().map(|e| e.sequence).collect()
    }

    fn seg_path(dir: &Path, id: SegmentId) -> PathBuf {
        dir.join(segment_file_name(id))
    }

    fn file_len(path: &Path) -> u64 {
        fs::metadata(path).unwrap().len()
    }

    fn segment_ids(dir: &Path) -> Vec<SegmentId> {
        segment::list_segments(dir)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// Raw segment bytes, for files the `Wal` would not write itself.
    fn raw_segment(first_sequence: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = encode_header(first_sequence).to_vec();
        for payload in payloads {
            out.extend_from_slice(&encode_frame_header(payload));
            out.extend_from_slice(payload);
        }
        out
    }

    /// Copies every file of `from` into the fresh directory `to`.
    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }

    fn truncate(path: &Path, len: u64) {
        OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len)
            .unwrap();
    }

    fn append_bytes(path: &Path, bytes: &[u8]) {
        OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    fn flip_byte(path: &Path, offset: usize) {
        let mut bytes = fs::read(path).unwrap();
        bytes[offset] ^= 0x5a;
        fs::write(path, bytes).unwrap();
    }

    /// Two closed segments, `[a, bb]` (seq 1-2) and `[ccc, dddd]` (seq 3-4).
    fn two_segments(dir: &Path) {
        let (mut wal, _) = open(dir);
        wal.append(&[b"a", b"bb"]).unwrap();
        assert_eq!(wal.rotate().unwrap(), Some(1));
        wal.append(&[b"ccc", b"dddd"]).unwrap();
        wal.sync().unwrap();
    }

    #[test]
    fn open_creates_a_missing_directory_and_starts_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join("wal");
        let (wal, replayed) = open(&dir);
        assert!(dir.is_dir());
        assert!(replayed.is_empty());
        assert_eq!(wal.last_sequence(), 0);
        assert_eq!(wal.current_segment(), None);
        assert!(wal.segments().is_empty());
        assert_eq!(wal.dir(), dir);
        // Opening creates no segment.
        assert!(segment_ids(&dir).is_empty());
    }

    #[test]
    fn appended_entries_are_replayed_in_order_after_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = open(dir);
        assert_eq!(wal.append(&[b"one"]).unwrap(), 1);
        assert_eq!(wal.append(&[b"two", b"", b"four"]).unwrap(), 4);
        assert_eq!(wal.current_segment(), Some(1));
        assert_eq!(wal.last_sequence(), 4);
        wal.sync().unwrap();
        drop(wal);

        let (mut wal, replayed) = open(dir);
        assert_eq!(payloads(&replayed), [&b"one"[..], b"two", b"", b"four"]);
        assert_eq!(sequences(&replayed), [1, 2, 3, 4]);
        assert!(replayed.iter().all(|e| e.segment == 1));
        assert_eq!(wal.last_sequence(), 4);
        assert_eq!(wal.current_segment(), None);

        // New appends go to a new segment; the old file is never touched again.
        let old_len = file_len(&seg_path(dir, 1));
        assert_eq!(wal.append(&[b"five"]).unwrap(), 5);
        wal.sync().unwrap();
        assert_eq!(wal.current_segment(), Some(2));
        assert_eq!(file_len(&seg_path(dir, 1)), old_len);
        drop(wal);

        let (_, replayed) = open(dir);
        assert_eq!(sequences(&replayed), [1, 2, 3, 4, 5]);
        assert_eq!(replayed[4].segment, 2);
        assert_eq!(replayed[4].payload, b"five");
        // The second segment's header records where it starts.
        let bytes = fs::read(seg_path(dir, 2)).unwrap();
        assert_eq!(&bytes[..16], &encode_header(5));
    }

    #[test]
    fn file_layout_matches_the_documented_format() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        wal.append(&[b"hello"]).unwrap();
        wal.sync().unwrap();
        let bytes = fs::read(seg_path(tmp.path(), 1)).unwrap();
        let mut expected = b"TWAL".to_vec();
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&1u64.to_le_bytes());
        expected.extend_from_slice(&5u32.to_le_bytes());
        let mut crc_input = 5u32.to_le_bytes().to_vec();
        crc_input.extend_from_slice(b"hello");
        expected.extend_from_slice(&crc32c::crc32c(&crc_input).to_le_bytes());
        expected.extend_from_slice(b"hello");
        assert_eq!(bytes, expected);
        assert_eq!(wal.segments()[0].size_bytes, expected.len() as u64);
    }

    #[test]
    fn an_empty_batch_appends_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        assert_eq!(wal.append(&[]).unwrap(), 0);
        assert_eq!(wal.current_segment(), None);
        wal.append(&[b"x"]).unwrap();
        assert_eq!(wal.append(&[]).unwrap(), 1);
        assert_eq!(wal.segments()[0].entry_count, 1);
    }

    #[test]
    fn an_oversized_entry_fails_the_whole_batch() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        let huge = vec![0u8; MAX_ENTRY_BYTES + 1];
        let err = wal.append(&[b"fine", &huge]).unwrap_err();
        assert!(
            matches!(err, WalError::EntryTooLarge { len, max }
                if len == MAX_ENTRY_BYTES + 1 && max == MAX_ENTRY_BYTES),
            "{err:?}"
        );
        // Nothing was written and the Wal is still usable.
        assert_eq!(wal.last_sequence(), 0);
        assert_eq!(wal.current_segment(), None);
        assert_eq!(wal.append(&[b"fine"]).unwrap(), 1);
    }

    #[test]
    fn a_torn_last_entry_is_truncated_at_every_byte_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let original = tmp.path().join("original");
        let (mut wal, _) = open(&original);
        wal.append(&[b"alpha", b"beta"]).unwrap();
        wal.sync().unwrap();
        let before_last = wal.segments()[0].size_bytes;
        wal.append(&[b"the last entry"]).unwrap();
        wal.sync().unwrap();
        let full = wal.segments()[0].size_bytes;
        drop(wal);
        assert_eq!(full - before_last, 8 + 14);

        for cut in before_last..full {
            let dir = tmp.path().join(format!("cut-{cut}"));
            copy_dir(&original, &dir);
            let path = seg_path(&dir, 1);
            truncate(&path, cut);

            // A reader stops at the torn entry and modifies nothing.
            let read = Wal::read_all(&dir).unwrap();
            assert_eq!(payloads(&read), [&b"alpha"[..], b"beta"], "cut at {cut}");
            assert_eq!(file_len(&path), cut);

            let (mut wal, replayed) = open(&dir);
            assert_eq!(
                payloads(&replayed),
                [&b"alpha"[..], b"beta"],
                "cut at {cut}"
            );
            assert_eq!(sequences(&replayed), [1, 2]);
            assert_eq!(file_len(&path), before_last, "torn tail truncated");
            assert_eq!(wal.segments()[0].size_bytes, before_last);
            // The lost entry's sequence is handed out again, in a new segment.
            assert_eq!(wal.append(&[b"again"]).unwrap(), 3);
            wal.sync().unwrap();
            assert_eq!(wal.current_segment(), Some(2));
            drop(wal);
            let (_, replayed) = open(&dir);
            assert_eq!(payloads(&replayed), [&b"alpha"[..], b"beta", b"again"]);
        }
    }

    #[test]
    fn a_last_segment_with_a_torn_header_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let original = tmp.path().join("original");
        two_segments(&original);
        for cut in 0..16 {
            let dir = tmp.path().join(format!("cut-{cut}"));
            copy_dir(&original, &dir);
            truncate(&seg_path(&dir, 2), cut);

            let read = Wal::read_all(&dir).unwrap();
            assert_eq!(sequences(&read), [1, 2]);
            assert_eq!(segment_ids(&dir), [1, 2], "read_all modifies nothing");

            let (mut wal, replayed) = open(&dir);
            assert_eq!(payloads(&replayed), [&b"a"[..], b"bb"]);
            assert_eq!(segment_ids(&dir), [1]);
            // The removed id is not reused.
            assert_eq!(wal.append(&[b"x"]).unwrap(), 3);
            assert_eq!(wal.current_segment(), Some(3));
        }
    }

    #[test]
    fn a_checksum_mismatch_in_the_last_segment_truncates_from_there() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        two_segments(dir);
        // Segment 2: header (16) | frame "ccc" (11) | frame "dddd" (12). Damage "dddd".
        let path = seg_path(dir, 2);
        flip_byte(&path, 16 + 11 + 8 + 1);

        assert_eq!(sequences(&Wal::read_all(dir).unwrap()), [1, 2, 3]);
        let (wal, replayed) = open(dir);
        assert_eq!(payloads(&replayed), [&b"a"[..], b"bb", b"ccc"]);
        assert_eq!(file_len(&path), 16 + 11);
        assert_eq!(wal.last_sequence(), 3);
    }

    #[test]
    fn damage_in_an_earlier_segment_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let original = tmp.path().join("original");
        two_segments(&original);
        let segment_len = file_len(&seg_path(&original, 1));

        type Damage = fn(&Path);
        let cases: [(&str, Damage, u64); 5] = [
            ("flipped payload byte", |p| flip_byte(p, 16 + 8), 16),
            ("flipped length byte", |p| flip_byte(p, 16 + 9), 16 + 9),
            ("torn tail", |p| truncate(p, 16 + 9 + 5), 16 + 9),
            (
                "zero-filled tail",
                |p| append_bytes(p, &[0; 64]),
                16 + 9 + 10,
            ),
            ("zeroed header", |p| fs::write(p, [0u8; 64]).unwrap(), 0),
        ];
        for (name, damage, expected_offset) in cases {
            let dir = tmp.path().join(name.replace(' ', "-"));
            copy_dir(&original, &dir);
            damage(&seg_path(&dir, 1));
            let before = fs::read(seg_path(&dir, 1)).unwrap();

            for result in [
                Wal::open(config(&dir)).map(|(_, entries)| entries),
                Wal::read_all(&dir),
            ] {
                match result {
                    Err(WalError::Corrupt {
                        segment, offset, ..
                    }) => {
                        assert_eq!(segment, 1, "{name}");
                        assert_eq!(offset, expected_offset, "{name}");
                    }
                    other => panic!("{name}: expected Corrupt, got {other:?}"),
                }
            }
            // Nothing was repaired.
            assert_eq!(fs::read(seg_path(&dir, 1)).unwrap(), before, "{name}");
            assert_eq!(segment_ids(&dir), [1, 2]);
        }
        assert_eq!(segment_len, 16 + 9 + 10);
    }

    #[test]
    fn a_zero_filled_tail_is_truncated() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        two_segments(dir);
        let path = seg_path(dir, 2);
        let len = file_len(&path);
        // What a crash after preallocation (or a metadata-only size update) leaves behind.
        append_bytes(&path, &[0; 4096]);
        assert_eq!(sequences(&Wal::read_all(dir).unwrap()), [1, 2, 3, 4]);
        let (_, replayed) = open(dir);
        assert_eq!(sequences(&replayed), [1, 2, 3, 4]);
        assert_eq!(file_len(&path), len);
    }

    #[test]
    fn a_zero_filled_last_segment_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        two_segments(dir);
        fs::write(seg_path(dir, 3), [0u8; 4096]).unwrap();
        let (mut wal, replayed) = open(dir);
        assert_eq!(sequences(&replayed), [1, 2, 3, 4]);
        assert_eq!(segment_ids(dir), [1, 2]);
        wal.append(&[b"e"]).unwrap();
        assert_eq!(wal.current_segment(), Some(4));
    }

    #[test]
    fn an_invalid_header_in_the_last_segment_is_an_error_not_a_repair() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        two_segments(dir);
        let path = seg_path(dir, 2);
        let mut bytes = fs::read(&path).unwrap();
        bytes[4] = 2; // a future format version: must never be "repaired" away
        fs::write(&path, &bytes).unwrap();

        let err = Wal::open(config(dir)).unwrap_err();
        assert!(
            matches!(
                err,
                WalError::Corrupt {
                    segment: 2,
                    offset: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(Wal::read_all(dir).is_err());
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn overlapping_sequence_ranges_are_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(seg_path(dir, 1), raw_segment(1, &[b"a", b"b", b"c"])).unwrap();
        fs::write(seg_path(dir, 2), raw_segment(3, &[b"d"])).unwrap();
        let err = Wal::open(config(dir)).unwrap_err();
        assert!(
            matches!(
                err,
                WalError::Corrupt {
                    segment: 2,
                    offset: 8,
                    ..
                }
            ),
            "{err:?}"
        );
        // A gap is fine (a caller may have raised `first_sequence_at_least`).
        fs::write(seg_path(dir, 2), raw_segment(10, &[b"d"])).unwrap();
        let (wal, replayed) = open(dir);
        assert_eq!(sequences(&replayed), [1, 2, 3, 10]);
        assert_eq!(wal.last_sequence(), 10);
    }

    #[test]
    fn segments_rotate_automatically_once_full() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(WalConfig {
            segment_max_bytes: 100,
            ..config(dir)
        })
        .unwrap();
        // Each 32-byte payload takes 40 bytes: 16 + 40 + 40 = 96, still within the limit.
        let payload = [7u8; 32];
        wal.append(&[&payload, &payload]).unwrap();
        wal.append(&[]).unwrap();
        assert_eq!(wal.current_segment(), Some(1));
        // 136 bytes: over the limit, but the segment stays current until the next append.
        wal.append(&[&payload]).unwrap();
        assert_eq!(wal.current_segment(), Some(1));
        assert_eq!(wal.segments()[0].size_bytes, 136);
        assert_eq!(wal.append(&[&payload]).unwrap(), 4);
        assert_eq!(wal.current_segment(), Some(2));

        let segments = wal.segments();
        assert_eq!(
            segments,
            [
                SegmentInfo {
                    id: 1,
                    size_bytes: 136,
                    first_sequence: 1,
                    entry_count: 3,
                    is_current: false,
                },
                SegmentInfo {
                    id: 2,
                    size_bytes: 56,
                    first_sequence: 4,
                    entry_count: 1,
                    is_current: true,
                },
            ]
        );
        assert_eq!(segments[0].last_sequence(), Some(3));
        // The closed segment was synced (so flushed) before segment 2 was created.
        assert_eq!(file_len(&seg_path(dir, 1)), 136);
        // A single batch is never split, however far it overshoots.
        let big = vec![1u8; 1000];
        wal.append(&[&big, &big]).unwrap();
        assert_eq!(wal.current_segment(), Some(2));
        wal.sync().unwrap();
        assert_eq!(file_len(&seg_path(dir, 2)), 56 + 2 * 1008);
        wal.append(&[b""]).unwrap();
        assert_eq!(wal.current_segment(), Some(3));
    }

    #[test]
    fn rotate_reports_the_last_closed_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = open(dir);
        assert_eq!(wal.rotate().unwrap(), None);
        wal.append(&[b"a"]).unwrap();
        assert_eq!(wal.rotate().unwrap(), Some(1));
        assert_eq!(wal.current_segment(), None);
        // Nothing new: no empty segment is created, the answer stays.
        assert_eq!(wal.rotate().unwrap(), Some(1));
        wal.append(&[b"b"]).unwrap();
        assert_eq!(wal.current_segment(), Some(2));
        // rotate syncs: the entry is in the file.
        assert_eq!(wal.rotate().unwrap(), Some(2));
        assert_eq!(sequences(&Wal::read_all(dir).unwrap()), [1, 2]);
        assert!(wal.segments().iter().all(|s| !s.is_current));
        drop(wal);

        let (mut wal, _) = open(dir);
        assert_eq!(wal.rotate().unwrap(), Some(2));
        wal.remove_segments_through(2).unwrap();
        assert_eq!(wal.rotate().unwrap(), Some(2));
    }

    #[test]
    fn remove_segments_through_deletes_only_closed_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = open(dir);
        for i in 0..3u8 {
            wal.append(&[&[i]]).unwrap();
            wal.rotate().unwrap();
        }
        wal.append(&[b"current"]).unwrap();
        assert_eq!(segment_ids(dir), [1, 2, 3, 4]);

        assert_eq!(wal.remove_segments_through(0).unwrap(), 0);
        assert_eq!(wal.remove_segments_through(2).unwrap(), 2);
        assert_eq!(segment_ids(dir), [3, 4]);
        assert_eq!(wal.remove_segments_through(2).unwrap(), 0);
        // The current segment survives any bound.
        assert_eq!(wal.remove_segments_through(u64::MAX).unwrap(), 1);
        assert_eq!(segment_ids(dir), [4]);
        assert_eq!(wal.segments().iter().map(|s| s.id).collect::<Vec<_>>(), [4]);
        wal.sync().unwrap();
        drop(wal);

        let (mut wal, replayed) = open(dir);
        assert_eq!(payloads(&replayed), [&b"current"[..]]);
        assert_eq!(sequences(&replayed), [4]);
        assert_eq!(wal.append(&[b"next"]).unwrap(), 5);
        assert_eq!(wal.current_segment(), Some(5));
    }

    #[test]
    fn ids_and_sequences_restart_only_when_every_segment_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = open(dir);
        wal.append(&[b"a", b"b"]).unwrap();
        wal.rotate().unwrap();
        assert_eq!(wal.remove_segments_through(1).unwrap(), 1);
        // The Wal itself remembers.
        assert_eq!(wal.append(&[b"c"]).unwrap(), 3);
        assert_eq!(wal.current_segment(), Some(2));
        wal.rotate().unwrap();
        wal.remove_segments_through(2).unwrap();
        drop(wal);

        // An empty directory carries no history...
        let (mut wal, _) = open(dir);
        assert_eq!(wal.last_sequence(), 0);
        assert_eq!(wal.append(&[b"x"]).unwrap(), 1);
        assert_eq!(wal.current_segment(), Some(1));
        wal.rotate().unwrap();
        wal.remove_segments_through(1).unwrap();
        drop(wal);

        // ...so the caller supplies its high-water marks.
        let (mut wal, _) = Wal::open(WalConfig {
            first_segment_id_at_least: 10,
            first_sequence_at_least: 100,
            ..config(dir)
        })
        .unwrap();
        assert_eq!(wal.last_sequence(), 99);
        assert_eq!(wal.append(&[b"y"]).unwrap(), 100);
        assert_eq!(wal.current_segment(), Some(10));
        wal.sync().unwrap();
        drop(wal);

        // Lower bounds below what the files say change nothing.
        let (mut wal, replayed) = Wal::open(WalConfig {
            first_segment_id_at_least: 3,
            first_sequence_at_least: 7,
            ..config(dir)
        })
        .unwrap();
        assert_eq!(sequences(&replayed), [100]);
        assert_eq!(wal.append(&[b"z"]).unwrap(), 101);
        assert_eq!(wal.current_segment(), Some(11));
    }

    #[test]
    fn read_all_sees_synced_entries_while_a_writer_is_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = Wal::open(WalConfig {
            segment_max_bytes: 64,
            ..config(dir)
        })
        .unwrap();
        assert!(Wal::read_all(dir).unwrap().is_empty());
        let mut expected = Vec::new();
        for i in 0..20u32 {
            let payload = format!("entry {i}").into_bytes();
            wal.append(&[&payload]).unwrap();
            expected.push(payload);
            if i % 3 == 0 {
                wal.sync().unwrap();
                let read = Wal::read_all(dir).unwrap();
                assert_eq!(read.len(), expected.len());
                assert_eq!(
                    payloads(&read),
                    expected.iter().map(Vec::as_slice).collect::<Vec<_>>()
                );
            } else {
                // Unsynced entries may or may not be visible yet, but only as a prefix.
                let read = Wal::read_all(dir).unwrap();
                assert!(read.len() <= expected.len());
                for (entry, payload) in read.iter().zip(&expected) {
                    assert_eq!(&entry.payload, payload);
                }
            }
        }
        assert!(wal.segments().len() > 3, "rotated along the way");
        let read = Wal::read_all(dir).unwrap();
        assert_eq!(
            sequences(&read),
            (1..=read.len() as u64).collect::<Vec<_>>()
        );
        // The writer still owns the directory.
        assert!(matches!(
            Wal::open(config(dir)),
            Err(WalError::Locked { .. })
        ));
    }

    #[test]
    fn read_all_of_a_missing_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Wal::read_all(&tmp.path().join("absent")).unwrap_err();
        assert!(matches!(err, WalError::Io { .. }), "{err:?}");
        assert!(!tmp.path().join("absent").exists());
    }

    #[test]
    fn only_one_writer_per_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (wal, _) = open(dir);
        let err = Wal::open(config(dir)).unwrap_err();
        assert!(
            matches!(&err, WalError::Locked { dir: d } if d == dir),
            "{err:?}"
        );
        drop(wal);
        open(dir);
    }

    #[test]
    fn dropping_flushes_unsynced_entries_to_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut wal, _) = open(dir);
        wal.append(&[b"not synced"]).unwrap();
        drop(wal);
        let (_, replayed) = open(dir);
        assert_eq!(payloads(&replayed), [&b"not synced"[..]]);
    }

    #[test]
    fn foreign_files_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        two_segments(dir);
        fs::write(dir.join("README"), b"hello").unwrap();
        fs::write(dir.join("00000000000000000009.wal.tmp"), b"junk").unwrap();
        fs::write(dir.join("9.wal"), b"junk").unwrap();
        let (mut wal, replayed) = open(dir);
        assert_eq!(sequences(&replayed), [1, 2, 3, 4]);
        wal.append(&[b"e"]).unwrap();
        assert_eq!(wal.current_segment(), Some(3));
        assert!(dir.join("README").exists());
    }

    #[test]
    fn an_empty_last_segment_keeps_the_sequence_high_water_mark() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // Segment whose only entry was torn: after repair it holds just its header.
        let mut bytes = raw_segment(42, &[b"lost"]);
        bytes.truncate(bytes.len() - 1);
        fs::write(seg_path(dir, 7), &bytes).unwrap();
        let (mut wal, replayed) = open(dir);
        assert!(replayed.is_empty());
        assert_eq!(file_len(&seg_path(dir, 7)), 16);
        assert_eq!(wal.last_sequence(), 41);
        assert_eq!(
            wal.segments(),
            [SegmentInfo {
                id: 7,
                size_bytes: 16,
                first_sequence: 42,
                entry_count: 0,
                is_current: false,
            }]
        );
        assert_eq!(wal.segments()[0].last_sequence(), None);
        assert_eq!(wal.append(&[b"kept"]).unwrap(), 42);
        wal.sync().unwrap();
        drop(wal);
        // The empty segment is a valid closed segment now.
        let (_, replayed) = open(dir);
        assert_eq!(sequences(&replayed), [42]);
        assert_eq!(replayed[0].segment, 8);
    }

    #[test]
    fn sequences_cannot_overflow() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(WalConfig {
            first_sequence_at_least: u64::MAX - 1,
            ..config(tmp.path())
        })
        .unwrap();
        assert!(matches!(
            wal.append(&[b"a", b"b"]),
            Err(WalError::SequenceExhausted)
        ));
        assert_eq!(wal.append(&[b"a"]).unwrap(), u64::MAX - 1);
        assert!(matches!(
            wal.append(&[b"b"]),
            Err(WalError::SequenceExhausted)
        ));
    }
}
