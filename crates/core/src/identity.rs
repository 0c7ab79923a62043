//! Identity changes that client calls ask for (`identify`, `alias`, `group`, an event carrying
//! both an anonymous and a user id). The catalog applies them; see its `persons` module.

use serde_json::{Map, Value};

/// One identity change, as a client call asks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityOp {
    /// Sets properties on the person of `distinct_id` (`set` overwrites, `set_once` only fills
    /// what is missing). `identified` marks the person as known (an `identify` with a user id).
    SetProperties {
        distinct_id: String,
        set: Map<String, Value>,
        set_once: Map<String, Value>,
        identified: bool,
    },
    /// Merges the person of `from` into the person of `into`. An implicit merge (an event or an
    /// `identify` carrying an anonymous id and a user id) is refused when `from` already belongs
    /// to another identified person, so a shared device does not join two users; an explicit one
    /// (`alias`) always merges.
    Merge {
        from: String,
        into: String,
        explicit: bool,
    },
    /// Sets properties on a group (an account, a company).
    Group {
        group_type: String,
        key: String,
        set: Map<String, Value>,
    },
}

impl IdentityOp {
    /// The merge an event implies when it carries both an anonymous id and a (different) user
    /// id: the anonymous id joins the user.
    pub fn implied_by(user_id: Option<&str>, anonymous_id: Option<&str>) -> Option<Self> {
        match (anonymous_id, user_id) {
            (Some(anon), Some(user)) if anon != user => Some(Self::Merge {
                from: anon.to_owned(),
                into: user.to_owned(),
                explicit: false,
            }),
            _ => None,
        }
    }
}
