//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

use crate::SegmentId;

/// Everything that can go wrong while opening, reading or writing a WAL.
///
/// `Display` never repeats the underlying [`io::Error`]; it is available as the error's
/// [`source`](std::error::Error::source) (print the chain, e.g. `{:#}` with `anyhow`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An operating-system call failed. `op` names what was attempted, `path` the file or
    /// directory it was attempted on.
    #[error("WAL I/O error: cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A segment holds bytes that are not a valid WAL where valid bytes are required: anywhere in
    /// a closed (not last) segment, or in the header of the last one. Nothing was modified.
    #[error("WAL segment {segment} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        segment: SegmentId,
        offset: u64,
        reason: String,
    },
    /// An appended payload is larger than [`MAX_ENTRY_BYTES`](crate::MAX_ENTRY_BYTES); nothing
    /// of the batch was written.
    #[error("WAL entry of {len} bytes exceeds the maximum of {max} bytes")]
    EntryTooLarge { len: usize, max: usize },
    /// Another [`Wal`](crate::Wal) (in this or another process) has the directory open for
    /// writing.
    #[error("WAL directory {} is already open for writing by another Wal", dir.display())]
    Locked { dir: PathBuf },
    /// An earlier write or sync of the current segment failed, so its tail is in an unknown
    /// state. The `Wal` refuses every further append and sync; drop it and open the directory
    /// again, which truncates whatever torn tail the failure left.
    #[error("WAL is unusable after an earlier I/O error; reopen it to recover")]
    Poisoned,
    /// The next sequence number would not fit in a `u64`.
    #[error("WAL sequence numbers are exhausted")]
    SequenceExhausted,
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
