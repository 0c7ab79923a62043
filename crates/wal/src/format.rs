//! The on-disk byte layout: segment file names, the segment header and entry frames.
//!
//! Pure functions over byte slices; no I/O happens here.

use std::fmt;

use crate::SegmentId;

/// First four bytes of every segment file.
pub(crate) const MAGIC: [u8; 4] = *b"TWAL";
/// The only format version this crate reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Size of the segment header: magic, version (u32 LE), first sequence (u64 LE).
pub(crate) const HEADER_LEN: usize = 16;
/// Size of an entry frame's header: payload length (u32 LE), checksum (u32 LE).
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Largest payload a single entry may carry: 64 MiB.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024 * 1024;

/// Extension of segment files.
const SEGMENT_EXT: &str = ".wal";
/// Number of decimal digits in a segment file name.
const SEGMENT_ID_DIGITS: usize = 20;

/// `{id:020}.wal`.
pub(crate) fn segment_file_name(id: SegmentId) -> String {
    format!("{id:0width$}{SEGMENT_EXT}", width = SEGMENT_ID_DIGITS)
}

/// The id encoded in a segment file name, or `None` if `name` is not one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(SEGMENT_EXT)?;
    if digits.len() != SEGMENT_ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The 16 header bytes of a segment whose first entry has sequence `first_sequence`.
pub(crate) fn encode_header(first_sequence: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&MAGIC);
    header[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[8..].copy_from_slice(&first_sequence.to_le_bytes());
    header
}

/// Why a segment header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// The file is shorter than a header, or its header bytes are all zero: what a crash right
    /// after creating the file (before anything in it was synced) leaves behind.
    Torn { len: usize },
    /// The header is complete but wrong: not a WAL segment, a future format, or damaged.
    Invalid { offset: u64, reason: String },
}

/// The first sequence number stored in the header at the start of `bytes`.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<u64, HeaderError> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(HeaderError::Torn { len: bytes.len() });
    };
    if header.iter().all(|&b| b == 0) {
        return Err(HeaderError::Torn { len: bytes.len() });
    }
    if header[..4] != MAGIC {
        return Err(HeaderError::Invalid {
            offset: 0,
            reason: format!("bad magic {:02x?} (expected {MAGIC:02x?})", &header[..4]),
        });
    }
    let version = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(HeaderError::Invalid {
            offset: 4,
            reason: format!(
                "unsupported format version {version} (this build reads {FORMAT_VERSION})"
            ),
        });
    }
    let first_sequence = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if first_sequence == 0 {
        return Err(HeaderError::Invalid {
            offset: 8,
            reason: "first sequence number is 0 (sequences start at 1)".to_owned(),
        });
    }
    Ok(first_sequence)
}

/// The checksum stored in a frame: CRC-32C of the little-endian length field followed by the
/// payload.
///
/// Covering the length makes an all-zero frame header invalid (the CRC-32C of an empty input is
/// 0, so a checksum over the payload alone would accept zero-filled space as a run of empty
/// entries) and catches a damaged length field directly.
pub(crate) fn frame_checksum(payload: &[u8]) -> u32 {
    let len = u32::try_from(payload.len()).expect("payload length checked against MAX_ENTRY_BYTES");
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

/// The 8-byte frame header for `payload`, whose length must not exceed [`MAX_ENTRY_BYTES`].
pub(crate) fn encode_frame_header(payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    debug_assert!(payload.len() <= MAX_ENTRY_BYTES);
    let len = payload.len() as u32;
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&frame_checksum(payload).to_le_bytes());
    header
}

/// Why the bytes at some offset are not a complete, valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes remain than the frame header, or than the length it declares.
    Truncated { needed: usize, available: usize },
    /// The declared length is larger than any entry this crate writes.
    TooLarge { len: usize },
    /// The stored checksum does not match the length and payload.
    ChecksumMismatch { stored: u32, computed: u32 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated { needed, available } => {
                write!(f, "partial frame: {available} of {needed} bytes present")
            }
            FrameError::TooLarge { len } => write!(
                f,
                "frame declares a {len}-byte payload, more than the maximum of {MAX_ENTRY_BYTES}"
            ),
            FrameError::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
        }
    }
}

/// Decodes the frame at the start of `bytes`: its payload and the number of bytes it occupies.
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<(&[u8], usize), FrameError> {
    let Some(header) = bytes.get(..FRAME_HEADER_LEN) else {
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER_LEN,
            available: bytes.len(),
        });
    };
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let stored = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_ENTRY_BYTES {
        return Err(FrameError::TooLarge { len });
    }
    let total = FRAME_HEADER_LEN + len;
    let Some(payload) = bytes.get(FRAME_HEADER_LEN..total) else {
        return Err(FrameError::Truncated {
            needed: total,
            available: bytes.len(),
        });
    };
    let computed = frame_checksum(payload);
    if computed != stored {
        return Err(FrameError::ChecksumMismatch { stored, computed });
    }
    Ok((payload, total))
}

/// The result of walking a segment's bytes.
#[derive(Debug)]
pub(crate) struct ScannedSegment<'a> {
    /// Sequence number of the first entry, from the header.
    pub(crate) first_sequence: u64,
    /// Payloads of the valid entries, in order.
    pub(crate) payloads: Vec<&'a [u8]>,
    /// Length of the valid prefix: the header and every valid frame.
    pub(crate) valid_len: usize,
    /// Where and why the walk stopped before the end of the bytes, if it did.
    pub(crate) invalid_tail: Option<(usize, FrameError)>,
}

/// Decodes a whole segment: the header, then frames until the end or the first invalid one.
pub(crate) fn scan_segment(bytes: &[u8]) -> Result<ScannedSegment<'_>, HeaderError> {
    let first_sequence = decode_header(bytes)?;
    let mut payloads = Vec::new();
    let mut offset = HEADER_LEN;
    let mut invalid_tail = None;
    while offset < bytes.len() {
        match decode_frame(&bytes[offset..]) {
            Ok((payload, consumed)) => {
                payloads.push(payload);
                offset += consumed;
            }
            Err(err) => {
                invalid_tail = Some((offset, err));
                break;
            }
        }
    }
    Ok(ScannedSegment {
        first_sequence,
        payloads,
        valid_len: offset,
        invalid_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = encode_frame_header(payload).to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn segment(first_sequence: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = encode_header(first_sequence).to_vec();
        for payload in payloads {
            out.extend(frame(payload));
        }
        out
    }

    #[test]
    fn file_names_round_trip_and_reject_strangers() {
        assert_eq!(segment_file_name(1), "00000000000000000001.wal");
        assert_eq!(segment_file_name(u64::MAX), "18446744073709551615.wal");
        for id in [0, 1, 42, u64::MAX] {
            assert_eq!(parse_segment_file_name(&segment_file_name(id)), Some(id));
        }
        for name in [
            "1.wal",
            "00000000000000000001.wal.tmp",
            "00000000000000000001.log",
            "0000000000000000000a.wal",
            "+0000000000000000001.wal",
            "99999999999999999999.wal", // overflows u64
            "000000000000000000001.wal",
            "",
        ] {
            assert_eq!(parse_segment_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn header_round_trips() {
        let header = encode_header(77);
        assert_eq!(&header[..4], b"TWAL");
        assert_eq!(&header[4..8], &1u32.to_le_bytes());
        assert_eq!(&header[8..], &77u64.to_le_bytes());
        assert_eq!(decode_header(&header), Ok(77));
    }

    #[test]
    fn header_problems_are_classified() {
        let header = encode_header(5);
        for len in 0..HEADER_LEN {
            assert_eq!(
                decode_header(&header[..len]),
                Err(HeaderError::Torn { len })
            );
        }
        assert_eq!(
            decode_header(&[0u8; 4096]),
            Err(HeaderError::Torn { len: 4096 })
        );

        let mut bad_magic = header;
        bad_magic[0] = b'X';
        assert!(matches!(
            decode_header(&bad_magic),
            Err(HeaderError::Invalid { offset: 0, .. })
        ));
        let mut future = header;
        future[4] = 2;
        assert!(matches!(
            decode_header(&future),
            Err(HeaderError::Invalid { offset: 4, .. })
        ));
        assert!(matches!(
            decode_header(&encode_header(0)),
            Err(HeaderError::Invalid { offset: 8, .. })
        ));
    }

    #[test]
    fn frames_round_trip() {
        for payload in [&b""[..], b"x", b"hello world", &[0u8; 1000], &[0xff; 3]] {
            let bytes = frame(payload);
            assert_eq!(bytes.len(), FRAME_HEADER_LEN + payload.len());
            assert_eq!(
                &bytes[..4],
                &(payload.len() as u32).to_le_bytes(),
                "length is u32 LE"
            );
            assert_eq!(decode_frame(&bytes), Ok((payload, bytes.len())));
            // Trailing bytes are not part of the frame.
            let mut longer = bytes.clone();
            longer.extend_from_slice(b"next");
            assert_eq!(decode_frame(&longer), Ok((payload, bytes.len())));
        }
    }

    #[test]
    fn zeroed_frame_header_is_not_an_empty_entry() {
        assert_eq!(crc32c::crc32c(b""), 0, "why the length is checksummed too");
        assert!(matches!(
            decode_frame(&[0u8; 64]),
            Err(FrameError::ChecksumMismatch { stored: 0, .. })
        ));
        // A genuine empty entry is fine.
        assert_eq!(decode_frame(&frame(b"")), Ok((&b""[..], 8)));
    }

    #[test]
    fn every_prefix_of_a_frame_is_truncated() {
        let bytes = frame(b"some payload");
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    decode_frame(&bytes[..len]),
                    Err(FrameError::Truncated { .. })
                ),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let bytes = frame(b"payload bytes");
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    decode_frame(&damaged).is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn oversized_length_is_rejected_without_reading_further() {
        let mut bytes = ((MAX_ENTRY_BYTES + 1) as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 4]);
        assert_eq!(
            decode_frame(&bytes),
            Err(FrameError::TooLarge {
                len: MAX_ENTRY_BYTES + 1
            })
        );
    }

    #[test]
    fn scan_stops_at_the_first_invalid_frame() {
        let mut bytes = segment(10, &[b"a", b"", b"ccc"]);
        let clean_len = bytes.len();
        let scan = scan_segment(&bytes).unwrap();
        assert_eq!(scan.first_sequence, 10);
        assert_eq!(scan.payloads, vec![&b"a"[..], b"", b"ccc"]);
        assert_eq!(scan.valid_len, clean_len);
        assert!(scan.invalid_tail.is_none());

        bytes.extend_from_slice(&[0; 100]);
        let scan = scan_segment(&bytes).unwrap();
        assert_eq!(scan.payloads.len(), 3);
        assert_eq!(scan.valid_len, clean_len);
        assert!(matches!(
            scan.invalid_tail,
            Some((offset, FrameError::ChecksumMismatch { .. })) if offset == clean_len
        ));

        let header_only = encode_header(3);
        let scan = scan_segment(&header_only).unwrap();
        assert!(scan.payloads.is_empty());
        assert_eq!(scan.valid_len, HEADER_LEN);
    }
}
