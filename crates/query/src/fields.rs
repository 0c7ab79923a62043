//! Field paths as users write them (`properties.plan`, `context.country`, `person.plan`, `browser`) and the
//! store column or JSON path each one means.

use tally_core::FieldError;
use tally_store::{FieldRef, GROUP_COLUMN_PREFIX, PERSON_COLUMN};

/// Top-level event fields that are columns.
const EVENT_FIELDS: &[&str] = &[
    "event",
    "category",
    "action",
    "label",
    "value",
    "user_id",
    "anonymous_id",
    "person_id",
    "session_id",
    "timestamp",
    "received_at",
];

/// Context keys that are stored as columns, and their column.
const CONTEXT_COLUMNS: &[(&str, &str)] = &[
    ("ip", "ip"),
    ("locale", "locale"),
    ("country", "country"),
    ("region", "region"),
    ("city", "city"),
    ("library", "library"),
    ("page.url", "url"),
    ("page.path", "path"),
    ("page.title", "title"),
    ("page.referrer", "referrer"),
    ("page.host", "host"),
    ("campaign.source", "utm_source"),
    ("campaign.medium", "utm_medium"),
    ("campaign.name", "utm_campaign"),
    ("campaign.term", "utm_term"),
    ("campaign.content", "utm_content"),
];

/// Enrichment columns, addressable bare (`browser`) or under `context.` (`context.browser`).
const ENRICHMENT_COLUMNS: &[&str] = &[
    "url",
    "host",
    "path",
    "title",
    "referrer",
    "referrer_host",
    "referrer_channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device_type",
    "country",
    "region",
    "city",
    "locale",
    "library",
];

const MAX_PATH_DEPTH: usize = 8;

/// Resolves a user's field path. `at` is the path of the field in the request, for errors.
pub fn resolve_field(path: &str, at: &str) -> Result<FieldRef, FieldError> {
    let bad = |msg: String| FieldError::new("invalid_field", at, msg);
    if path.is_empty() || path.len() > 200 {
        return Err(bad("a field path must be 1 to 200 characters".into()));
    }
    if EVENT_FIELDS.contains(&path) || ENRICHMENT_COLUMNS.contains(&path) {
        return Ok(FieldRef::Column(path.to_owned()));
    }
    let json_path = |rest: &str| -> Result<Vec<String>, FieldError> {
        let parts: Vec<String> = rest.split('.').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) || parts.len() > MAX_PATH_DEPTH {
            return Err(bad(format!("`{path}` is not a valid path")));
        }
        Ok(parts)
    };
    if let Some(rest) = path.strip_prefix("properties.") {
        return Ok(FieldRef::Json {
            column: "properties".into(),
            path: json_path(rest)?,
        });
    }
    if let Some(rest) = path.strip_prefix("person.") {
        // PostHog's spelling, `person.properties.plan`, means the same.
        let rest = rest.strip_prefix("properties.").unwrap_or(rest);
        return Ok(FieldRef::Json {
            column: PERSON_COLUMN.into(),
            path: json_path(rest)?,
        });
    }
    if let Some(rest) = path.strip_prefix("group.") {
        // `group.TYPE.NAME`: a property of the event's group of that type.
        let (group_type, name) = rest.split_once('.').ok_or_else(|| {
            bad(format!(
                "`{path}`: group fields are `group.TYPE.NAME` (e.g. group.company.plan)"
            ))
        })?;
        if group_type.is_empty() || group_type.len() > 100 {
            return Err(bad(format!(
                "`{path}`: the group type must be 1 to 100 characters"
            )));
        }
        return Ok(FieldRef::Json {
            column: format!("{GROUP_COLUMN_PREFIX}{group_type}"),
            path: json_path(name)?,
        });
    }
    if let Some(rest) = path.strip_prefix("context.") {
        if let Some((_, c)) = CONTEXT_COLUMNS.iter().find(|(k, _)| *k == rest) {
            return Ok(FieldRef::Column((*c).to_owned()));
        }
        if ENRICHMENT_COLUMNS.contains(&rest) {
            return Ok(FieldRef::Column(rest.to_owned()));
        }
        if rest == "user_agent" {
            return Err(bad(
                "the raw user agent is not stored; use context.browser, context.os or context.device_type"
                    .into(),
            ));
        }
        return Ok(FieldRef::Json {
            column: "context_extra".into(),
            path: json_path(rest)?,
        });
    }
    Err(bad(format!(
        "unknown field `{path}`: use an event field ({}), `properties.NAME`, `context.NAME`, `person.NAME` (a person property), `group.TYPE.NAME` (a group property) or an enrichment column such as `browser`",
        EVENT_FIELDS.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_each_kind() {
        assert_eq!(
            resolve_field("context.country", "x").unwrap(),
            FieldRef::Column("country".into())
        );
        assert_eq!(
            resolve_field("context.page.url", "x").unwrap(),
            FieldRef::Column("url".into())
        );
        assert_eq!(
            resolve_field("browser", "x").unwrap(),
            FieldRef::Column("browser".into())
        );
        assert_eq!(
            resolve_field("properties.a.b", "x").unwrap(),
            FieldRef::Json {
                column: "properties".into(),
                path: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            resolve_field("context.app.version", "x").unwrap(),
            FieldRef::Json {
                column: "context_extra".into(),
                path: vec!["app".into(), "version".into()]
            }
        );
        let e = resolve_field("plan", "rules[0].filters[0]").unwrap_err();
        assert_eq!(e.field, "rules[0].filters[0]");
        assert!(resolve_field("properties.", "x").is_err());
    }
}
