//! Segment files in the WAL directory: listing them, validating and replaying them, and the
//! directory handle that locks the directory and makes its entries durable.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::format::{self, HeaderError};
use crate::{ReplayedEntry, SegmentId, SegmentInfo, WalError};

/// Path of segment `id` inside `dir`.
pub(crate) fn segment_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format::segment_file_name(id))
}

/// Every segment file in `dir`, by increasing id. Other entries are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(SegmentId, PathBuf)>, WalError> {
    let read_dir = fs::read_dir(dir).map_err(|e| WalError::io("list directory", dir, e))?;
    let mut segments = Vec::new();
    for entry in read_dir {
        let entry = entry.map_err(|e| WalError::io("list directory", dir, e))?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(format::parse_segment_file_name) else {
            tracing::trace!(name = ?name, "ignoring non-segment entry in the WAL directory");
            continue;
        };
        segments.push((id, entry.path()));
    }
    segments.sort_unstable_by_key(|&(id, _)| id);
    Ok(segments)
}

/// What to do about a damaged tail of the last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadMode {
    /// Truncate it (or remove the segment if even its header is torn) and make the result
    /// durable: what a writer does before it takes over the directory.
    Repair,
    /// Stop reading there and change nothing: safe next to a running writer.
    ReadOnly,
}

/// The validated contents of a WAL directory.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The segments that remain, by increasing id.
    pub(crate) segments: Vec<SegmentInfo>,
    /// Their entries, in order.
    pub(crate) entries: Vec<ReplayedEntry>,
    /// The highest segment id seen, including a segment removed because its header was torn.
    pub(crate) highest_id: Option<SegmentId>,
}

/// Reads and validates every segment of `dir`; see [`LoadMode`] for how a damaged tail of the
/// last segment is handled. Damage anywhere else is [`WalError::Corrupt`].
pub(crate) fn load(dir: &Path, mode: LoadMode) -> Result<Loaded, WalError> {
    let listing = list_segments(dir)?;
    let mut loaded = Loaded {
        highest_id: listing.last().map(|&(id, _)| id),
        ..Loaded::default()
    };
    // The lowest sequence number the next segment may start at.
    let mut min_next_sequence = 1u64;

    for (index, (id, path)) in listing.iter().enumerate() {
        let id = *id;
        let is_last = index + 1 == listing.len();
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound && mode == LoadMode::ReadOnly => {
                // A writer removed it (and so every segment before it) after we listed the
                // directory: what we read so far is gone too, keep only what follows.
                tracing::debug!(segment = id, "WAL segment removed while reading; skipping");
                loaded.segments.clear();
                loaded.entries.clear();
                continue;
            }
            Err(e) => return Err(WalError::io("read segment", path, e)),
        };

        let scan = match format::scan_segment(&bytes) {
            Ok(scan) => scan,
            Err(HeaderError::Torn { len }) if is_last => {
                // Created, but nothing in it was ever synced: nothing acknowledged is lost.
                match mode {
                    LoadMode::Repair => {
                        tracing::warn!(
                            segment = id,
                            len,
                            "removing the last WAL segment: its header was never completely written"
                        );
                        fs::remove_file(path)
                            .map_err(|e| WalError::io("remove torn segment", path, e))?;
                    }
                    LoadMode::ReadOnly => {
                        tracing::debug!(segment = id, len, "last WAL segment has no header yet");
                    }
                }
                continue;
            }
            Err(HeaderError::Torn { len }) => {
                return Err(WalError::Corrupt {
                    segment: id,
                    offset: 0,
                    reason: format!(
                        "incomplete or zeroed header ({len} bytes) in a segment that is not the last"
                    ),
                });
            }
            Err(HeaderError::Invalid { offset, reason }) => {
                return Err(WalError::Corrupt {
                    segment: id,
                    offset,
                    reason,
                });
            }
        };

        if scan.first_sequence < min_next_sequence {
            return Err(WalError::Corrupt {
                segment: id,
                offset: 8,
                reason: format!(
                    "first sequence {} overlaps the previous segment (next free sequence {min_next_sequence})",
                    scan.first_sequence
                ),
            });
        }
        let entry_count = scan.payloads.len() as u64;
        let Some(after_last) = scan.first_sequence.checked_add(entry_count) else {
            return Err(WalError::Corrupt {
                segment: id,
                offset: 8,
                reason: format!(
                    "first sequence {} plus {entry_count} entries overflows u64",
                    scan.first_sequence
                ),
            });
        };

        if let Some((offset, err)) = &scan.invalid_tail {
            if !is_last {
                return Err(WalError::Corrupt {
                    segment: id,
                    offset: *offset as u64,
                    reason: err.to_string(),
                });
            }
            if mode == LoadMode::Repair {
                tracing::warn!(
                    segment = id,
                    offset,
                    discarded_bytes = bytes.len() - offset,
                    reason = %err,
                    "truncating the torn tail of the last WAL segment"
                );
            }
        }
        if mode == LoadMode::Repair && is_last {
            // Truncate a torn tail, and make what we are about to replay durable whether or not
            // there was one: the crashed writer may never have synced it, and it must not vanish
            // once newer segments exist.
            truncate_and_sync(path, scan.valid_len as u64, scan.invalid_tail.is_some())?;
        }

        loaded.entries.reserve(scan.payloads.len());
        for (sequence, payload) in (scan.first_sequence..).zip(&scan.payloads) {
            loaded.entries.push(ReplayedEntry {
                segment: id,
                sequence,
                payload: payload.to_vec(),
            });
        }
        loaded.segments.push(SegmentInfo {
            id,
            size_bytes: scan.valid_len as u64,
            first_sequence: scan.first_sequence,
            entry_count,
            is_current: false,
        });
        min_next_sequence = after_last;
    }
    Ok(loaded)
}

fn truncate_and_sync(path: &Path, len: u64, truncate: bool) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("open segment for repair", path, e))?;
    if truncate {
        file.set_len(len)
            .map_err(|e| WalError::io("truncate segment", path, e))?;
    }
    file.sync_all()
        .map_err(|e| WalError::io("sync segment", path, e))
}

/// An open handle on the WAL directory: holds an exclusive advisory lock (so two writers never
/// share a directory) and fsyncs the directory. On non-Unix platforms both are no-ops.
#[derive(Debug)]
pub(crate) struct DirHandle {
    path: PathBuf,
    #[cfg(unix)]
    file: fs::File,
}

impl DirHandle {
    /// Opens `path` and takes the writer lock, failing with [`WalError::Locked`] if another
    /// handle holds it.
    pub(crate) fn lock(path: &Path) -> Result<Self, WalError> {
        #[cfg(unix)]
        {
            let file = fs::File::open(path).map_err(|e| WalError::io("open directory", path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(WalError::Locked {
                        dir: path.to_owned(),
                    });
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(WalError::io("lock directory", path, e));
                }
            }
            Ok(DirHandle {
                path: path.to_owned(),
                file,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(DirHandle {
                path: path.to_owned(),
            })
        }
    }

    /// Makes the creation and removal of entries in the directory durable.
    pub(crate) fn sync(&self) -> Result<(), WalError> {
        #[cfg(unix)]
        {
            self.file
                .sync_all()
                .map_err(|e| WalError::io("sync directory", &self.path, e))
        }
        #[cfg(not(unix))]
        {
            Ok(())
        }
    }
}

/// Creates `dir` (and missing parents) if it does not exist, making its entry in the parent
/// durable.
pub(crate) fn create_dir(dir: &Path) -> Result<(), WalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
    #[cfg(unix)]
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(|e| WalError::io("sync directory", parent, e))?;
    }
    Ok(())
}
