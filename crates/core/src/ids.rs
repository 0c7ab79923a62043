//! Identifiers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A project's id: `p` followed by 16 lowercase hex digits. It names folders on disk, so it is
/// validated wherever it comes from outside.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProjectId(String);

impl ProjectId {
    /// A new random project id.
    pub fn generate() -> Self {
        let bytes = uuid::Uuid::new_v4();
        let hex: String = bytes.as_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self(format!("p{hex}"))
    }

    /// Parses an id, refusing anything that could not have been generated (and so anything that
    /// could escape a folder).
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 17
            && s.starts_with('p')
            && s[1..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The 16 bytes a `message_id` is stored as: the UUID itself when the id is a UUID, otherwise a
/// name-based UUID (v5) of the string, so that the same id always maps to the same 16 bytes.
pub fn message_id_bytes(message_id: &str) -> [u8; 16] {
    match uuid::Uuid::parse_str(message_id) {
        Ok(u) => *u.as_bytes(),
        Err(_) => *uuid::Uuid::new_v5(&MESSAGE_ID_NAMESPACE, message_id.as_bytes()).as_bytes(),
    }
}

const MESSAGE_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_bytes([
    0x7a, 0x11, 0x7a, 0x11, 0x3e, 0x55, 0x4a, 0x9e, 0x8e, 0x2c, 0x6d, 0x21, 0x40, 0x93, 0x1b, 0x05,
]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_round_trip_and_reject_paths() {
        let id = ProjectId::generate();
        assert_eq!(ProjectId::parse(id.as_str()), Some(id));
        assert_eq!(ProjectId::parse("../etc/passwd0000"), None);
        assert_eq!(ProjectId::parse("p0123456789abcdeF"), None);
    }

    #[test]
    fn message_ids_are_stable() {
        let u = "0190c1d2-0000-7000-8000-000000000001";
        assert_eq!(
            message_id_bytes(u),
            *uuid::Uuid::parse_str(u).unwrap().as_bytes()
        );
        assert_eq!(message_id_bytes("abc"), message_id_bytes("abc"));
        assert_ne!(message_id_bytes("abc"), message_id_bytes("abd"));
    }
}
