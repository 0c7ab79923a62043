//! Persons, their distinct ids, and groups: what `identify`, `alias` and `group` calls leave behind.
//!
//! Events are stored under the id they arrived with (`user_id`, else `anonymous_id`). A person is
//! one or more such *distinct ids*; the person's id is the id the others were merged into (a user
//! id once the person is identified). Only ids that were merged into another person have a row in
//! `person_distinct_ids`, so a project that never merges has none, and queries map the `person_id`
//! of stored events through these rows (the *overrides*): events that arrived before a merge count
//! for the merged person too.
//!
//! Every change to the overrides bumps the project's identity version, so readers can cache them.

use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::{Map, Value};
use tally_core::{IdentityOp, ProjectId};

use crate::{Catalog, Result, now_rfc3339};

/// What an [`IdentityOp::Merge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    Merged {
        from_person: String,
        into: String,
    },
    AlreadyOne,
    Refused(String),
    /// Not a merge.
    NotAMerge,
}

/// A person as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub id: String,
    /// Every id of the person, its own first.
    pub distinct_ids: Vec<String>,
    pub properties: Map<String, Value>,
    pub identified: bool,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// A group as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub group_type: String,
    pub key: String,
    pub properties: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// What [`Catalog::finish_erasure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasureRecord {
    pub person_records_removed: u64,
    pub report_runs_redacted: u64,
    pub audit_id: i64,
}

/// The distinct ids of a project that belong to another person: `(distinct_id, person_id)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonOverrides {
    pub version: i64,
    pub pairs: Vec<(String, String)>,
}

impl Catalog {
    /// Applies `ops` in order, in one transaction: when it returns, they are durable.
    pub fn apply_identity(
        &self,
        project: &ProjectId,
        ops: &[IdentityOp],
    ) -> Result<Vec<MergeOutcome>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let mut out = Vec::with_capacity(ops.len());
            let mut changed = false;
            let mut properties_changed = false;
            for op in ops {
                let outcome = match op {
                    IdentityOp::SetProperties {
                        distinct_id,
                        set,
                        set_once,
                        identified,
                    } => {
                        let person = resolve(&tx, project, distinct_id)?;
                        update_person(&tx, project, &person, set, set_once, *identified)?;
                        properties_changed = true;
                        MergeOutcome::NotAMerge
                    }
                    IdentityOp::Merge {
                        from,
                        into,
                        explicit,
                    } => {
                        let o = merge(&tx, project, from, into, *explicit)?;
                        changed |= matches!(o, MergeOutcome::Merged { .. });
                        o
                    }
                    IdentityOp::Group {
                        group_type,
                        key,
                        set,
                    } => {
                        update_group(&tx, project, group_type, key, set)?;
                        properties_changed = true;
                        MergeOutcome::NotAMerge
                    }
                };
                out.push(outcome);
            }
            if changed || properties_changed {
                // A merge also changes whose properties the merged ids' events see.
                tx.execute(
                    "INSERT INTO identity_versions(project_id, version, properties_version)
                     VALUES (?1, ?2, 1)
                     ON CONFLICT(project_id) DO UPDATE SET version = version + ?2,
                        properties_version = properties_version + 1",
                    params![project.as_str(), i64::from(changed)],
                )?;
            }
            tx.commit()?;
            Ok(out)
        })
    }

    /// The person a distinct id belongs to, if the person store knows it (it has properties or
    /// other ids); `None` for an id that only ever sent events.
    pub fn person(&self, project: &ProjectId, distinct_id: &str) -> Result<Option<Person>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let id = resolve(&tx, project, distinct_id)?;
            let row: Option<(String, bool, String, String)> = tx
                .query_row(
                    "SELECT properties, identified, created_at, updated_at FROM persons
                     WHERE project_id = ?1 AND person_id = ?2",
                    params![project.as_str(), id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let mut stmt = tx.prepare(
                "SELECT distinct_id FROM person_distinct_ids
                 WHERE project_id = ?1 AND person_id = ?2 ORDER BY distinct_id",
            )?;
            let others = stmt
                .query_map(params![project.as_str(), id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            if row.is_none() && others.is_empty() {
                return Ok(None);
            }
            let (properties, identified, created_at, updated_at) = match row {
                Some((p, i, c, u)) => (serde_json::from_str(&p)?, i, Some(c), Some(u)),
                None => (Map::new(), false, None, None),
            };
            let mut distinct_ids = vec![id.clone()];
            distinct_ids.extend(others);
            Ok(Some(Person {
                id,
                distinct_ids,
                properties,
                identified,
                created_at,
                updated_at,
            }))
        })
    }

    /// A group, if it was ever set.
    pub fn group(&self, project: &ProjectId, group_type: &str, key: &str) -> Result<Option<Group>> {
        self.with(|c| {
            let row = c
                .query_row(
                    "SELECT properties, created_at, updated_at FROM groups
                     WHERE project_id = ?1 AND group_type = ?2 AND group_key = ?3",
                    params![project.as_str(), group_type, key],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(p, created_at, updated_at)| {
                Ok(Group {
                    group_type: group_type.to_owned(),
                    key: key.to_owned(),
                    properties: serde_json::from_str(&p)?,
                    created_at,
                    updated_at,
                })
            })
            .transpose()
        })
    }

    /// Every id of the person `distinct_id` belongs to: the person's own id first, then the ids
    /// merged into it (just `distinct_id` when it was never merged).
    pub fn linked_ids(&self, project: &ProjectId, distinct_id: &str) -> Result<Vec<String>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let person = resolve(&tx, project, distinct_id)?;
            let mut stmt = tx.prepare(
                "SELECT distinct_id FROM person_distinct_ids
                 WHERE project_id = ?1 AND person_id = ?2 ORDER BY distinct_id",
            )?;
            let mut ids = vec![person.clone()];
            for id in
                stmt.query_map(params![project.as_str(), person], |r| r.get::<_, String>(0))?
            {
                let id = id?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Ok(ids)
        })
    }

    /// Finishes erasing a person whose events are gone, in one transaction (so that a crash
    /// leaves either all of it or none, and a repeated erasure still finds every id): deletes
    /// what the person store holds about `ids` (properties, merged ids), replaces the ids in
    /// stored report outputs by `[erased]`, and records `actor` and the counts (`events` plus
    /// these) in the audit log. Bumps the versions readers cache by; the merge version only
    /// when merges were deleted (a project without merges keeps answering unique counts from
    /// rollups).
    pub fn finish_erasure(
        &self,
        project: &ProjectId,
        ids: &[String],
        actor: &str,
        events: &Value,
    ) -> Result<ErasureRecord> {
        self.with(|c| {
            let tx = c.transaction()?;
            let (mut persons, mut merges) = (0usize, 0usize);
            for id in ids {
                persons += tx.execute(
                    "DELETE FROM persons WHERE project_id = ?1 AND person_id = ?2",
                    params![project.as_str(), id],
                )?;
                merges += tx.execute(
                    "DELETE FROM person_distinct_ids
                     WHERE project_id = ?1 AND (distinct_id = ?2 OR person_id = ?2)",
                    params![project.as_str(), id],
                )?;
            }
            if persons + merges > 0 {
                tx.execute(
                    "INSERT INTO identity_versions(project_id, version, properties_version)
                     VALUES (?1, ?2, 1)
                     ON CONFLICT(project_id) DO UPDATE SET version = version + ?2,
                        properties_version = properties_version + 1",
                    params![project.as_str(), i64::from(merges > 0)],
                )?;
            }
            let mut record = ErasureRecord {
                person_records_removed: (persons + merges) as u64,
                report_runs_redacted: crate::reports::redact_run_outputs(&tx, project, ids)?,
                audit_id: 0,
            };
            let mut detail = events.clone();
            if let Value::Object(o) = &mut detail {
                o.insert("ids".into(), Value::from(ids.len()));
                o.insert(
                    "person_records_removed".into(),
                    Value::from(record.person_records_removed),
                );
                o.insert(
                    "report_runs_redacted".into(),
                    Value::from(record.report_runs_redacted),
                );
            }
            record.audit_id = crate::audit::insert(&tx, project, actor, "erase_person", &detail)?;
            tx.commit()?;
            Ok(record)
        })
    }

    /// The project's identity version: 0 until the first merge, then bumped by each merge.
    pub fn identity_version(&self, project: &ProjectId) -> Result<i64> {
        self.with(|c| version(c, project, Counter::Merges))
    }

    /// The project's person-properties version: bumped by every change to a person's
    /// properties or ids, and to a group.
    pub fn person_properties_version(&self, project: &ProjectId) -> Result<i64> {
        self.with(|c| version(c, project, Counter::Properties))
    }

    /// Every person of the project that has properties: `(person_id, properties as JSON text)`,
    /// with the properties version they are at.
    pub fn person_properties(&self, project: &ProjectId) -> Result<(i64, Vec<(String, String)>)> {
        self.versioned_pairs(
            project,
            Counter::Properties,
            "SELECT person_id, properties FROM persons WHERE project_id = ?1 AND properties != '{}'",
            None,
        )
    }

    /// Every group of `group_type` in the project: `(key, properties as JSON text)`, with the
    /// properties version they are at (group changes bump it too).
    pub fn groups_of_type(
        &self,
        project: &ProjectId,
        group_type: &str,
    ) -> Result<(i64, Vec<(String, String)>)> {
        self.versioned_pairs(
            project,
            Counter::Properties,
            "SELECT group_key, properties FROM groups WHERE project_id = ?1 AND group_type = ?2",
            Some(group_type),
        )
    }

    /// The project's overrides, with the version they are at.
    pub fn person_overrides(&self, project: &ProjectId) -> Result<PersonOverrides> {
        let (version, pairs) = self.versioned_pairs(
            project,
            Counter::Merges,
            "SELECT distinct_id, person_id FROM person_distinct_ids WHERE project_id = ?1",
            None,
        )?;
        Ok(PersonOverrides { version, pairs })
    }

    /// The text pairs `sql` selects (its `?1` is the project, `?2` the optional `arg`), with the
    /// `counter`'s version read in the same transaction.
    fn versioned_pairs(
        &self,
        project: &ProjectId,
        counter: Counter,
        sql: &str,
        arg: Option<&str>,
    ) -> Result<(i64, Vec<(String, String)>)> {
        self.with(|c| {
            let tx = c.transaction()?;
            let version = version(&tx, project, counter)?;
            let mut stmt = tx.prepare(sql)?;
            let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
            let pairs = match arg {
                Some(a) => stmt.query_map(params![project.as_str(), a], row)?,
                None => stmt.query_map(params![project.as_str()], row)?,
            }
            .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((version, pairs))
        })
    }
}

/// The two counters of `identity_versions`.
#[derive(Debug, Clone, Copy)]
enum Counter {
    /// Bumped by merges: the overrides changed.
    Merges,
    /// Bumped by any change to persons or groups.
    Properties,
}

fn version(c: &rusqlite::Connection, project: &ProjectId, counter: Counter) -> Result<i64> {
    let sql = match counter {
        Counter::Merges => "SELECT version FROM identity_versions WHERE project_id = ?1",
        Counter::Properties => {
            "SELECT properties_version FROM identity_versions WHERE project_id = ?1"
        }
    };
    Ok(c.query_row(sql, [project.as_str()], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// The person `distinct_id` belongs to.
fn resolve(tx: &Transaction, project: &ProjectId, distinct_id: &str) -> Result<String> {
    Ok(tx
        .query_row(
            "SELECT person_id FROM person_distinct_ids WHERE project_id = ?1 AND distinct_id = ?2",
            params![project.as_str(), distinct_id],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_else(|| distinct_id.to_owned()))
}

fn person_row(
    tx: &Transaction,
    project: &ProjectId,
    person: &str,
) -> Result<Option<(Map<String, Value>, bool)>> {
    let row: Option<(String, bool)> = tx
        .query_row(
            "SELECT properties, identified FROM persons WHERE project_id = ?1 AND person_id = ?2",
            params![project.as_str(), person],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(p, i)| Ok((serde_json::from_str(&p)?, i)))
        .transpose()
}

fn update_person(
    tx: &Transaction,
    project: &ProjectId,
    person: &str,
    set: &Map<String, Value>,
    set_once: &Map<String, Value>,
    identified: bool,
) -> Result<()> {
    let (mut props, was_identified) = person_row(tx, project, person)?.unwrap_or_default();
    for (k, v) in set_once {
        props.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in set {
        props.insert(k.clone(), v.clone());
    }
    let now = now_rfc3339();
    tx.execute(
        "INSERT INTO persons(project_id, person_id, properties, identified, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT(project_id, person_id) DO UPDATE SET
            properties = excluded.properties, identified = excluded.identified,
            updated_at = excluded.updated_at",
        params![
            project.as_str(),
            person,
            Value::Object(props).to_string(),
            identified || was_identified,
            now
        ],
    )?;
    Ok(())
}

fn merge(
    tx: &Transaction,
    project: &ProjectId,
    from: &str,
    into: &str,
    explicit: bool,
) -> Result<MergeOutcome> {
    let p_from = resolve(tx, project, from)?;
    let p_into = resolve(tx, project, into)?;
    if p_from == p_into {
        return Ok(MergeOutcome::AlreadyOne);
    }
    let from_row = person_row(tx, project, &p_from)?;
    if !explicit {
        if p_from != from {
            return Ok(MergeOutcome::Refused(format!(
                "`{from}` already belongs to `{p_from}`"
            )));
        }
        if from_row.as_ref().is_some_and(|(_, identified)| *identified) {
            return Ok(MergeOutcome::Refused(format!(
                "`{from}` is an identified person; use alias to merge it"
            )));
        }
    }
    // Every id of the merged person, and the person's own id, now belong to `p_into`.
    tx.execute(
        "UPDATE person_distinct_ids SET person_id = ?3 WHERE project_id = ?1 AND person_id = ?2",
        params![project.as_str(), p_from, p_into],
    )?;
    tx.execute(
        "INSERT INTO person_distinct_ids(project_id, distinct_id, person_id) VALUES (?1, ?2, ?3)
         ON CONFLICT(project_id, distinct_id) DO UPDATE SET person_id = excluded.person_id",
        params![project.as_str(), p_from, p_into],
    )?;
    // The surviving person keeps its own properties over the merged one's, and is identified:
    // it is the user id side of the merge.
    let props = match from_row {
        Some((props, _)) => {
            tx.execute(
                "DELETE FROM persons WHERE project_id = ?1 AND person_id = ?2",
                params![project.as_str(), p_from],
            )?;
            props
        }
        None => Map::new(),
    };
    update_person(tx, project, &p_into, &Map::new(), &props, true)?;
    Ok(MergeOutcome::Merged {
        from_person: p_from,
        into: p_into,
    })
}

fn update_group(
    tx: &Transaction,
    project: &ProjectId,
    group_type: &str,
    key: &str,
    set: &Map<String, Value>,
) -> Result<()> {
    let old: Option<String> = tx
        .query_row(
            "SELECT properties FROM groups WHERE project_id = ?1 AND group_type = ?2 AND group_key = ?3",
            params![project.as_str(), group_type, key],
            |r| r.get(0),
        )
        .optional()?;
    let mut props: Map<String, Value> = match old {
        Some(p) => serde_json::from_str(&p)?,
        None => Map::new(),
    };
    for (k, v) in set {
        props.insert(k.clone(), v.clone());
    }
    let now = now_rfc3339();
    tx.execute(
        "INSERT INTO groups(project_id, group_type, group_key, properties, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT(project_id, group_type, group_key) DO UPDATE SET
            properties = excluded.properties, updated_at = excluded.updated_at",
        params![
            project.as_str(),
            group_type,
            key,
            Value::Object(props).to_string(),
            now
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup() -> (Catalog, ProjectId) {
        let c = Catalog::open_in_memory().unwrap();
        let p = c.create_project("p").unwrap().id;
        (c, p)
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn merge_op(from: &str, into: &str, explicit: bool) -> IdentityOp {
        IdentityOp::Merge {
            from: from.into(),
            into: into.into(),
            explicit,
        }
    }

    fn set(id: &str, props: Value, identified: bool) -> IdentityOp {
        IdentityOp::SetProperties {
            distinct_id: id.into(),
            set: obj(props),
            set_once: Map::new(),
            identified,
        }
    }

    #[test]
    fn identify_then_alias_makes_one_person_with_every_id() {
        let (c, p) = setup();
        assert_eq!(c.identity_version(&p).unwrap(), 0);
        c.apply_identity(&p, &[set("anon-1", json!({"theme": "dark"}), false)])
            .unwrap();
        let out = c
            .apply_identity(
                &p,
                &[
                    merge_op("anon-1", "u1", false),
                    set("u1", json!({"plan": "pro"}), true),
                ],
            )
            .unwrap();
        assert_eq!(
            out[0],
            MergeOutcome::Merged {
                from_person: "anon-1".into(),
                into: "u1".into()
            }
        );
        c.apply_identity(&p, &[merge_op("old-login", "u1", true)])
            .unwrap();
        let person = c.person(&p, "anon-1").unwrap().unwrap();
        assert_eq!(person.id, "u1");
        assert_eq!(person.distinct_ids, ["u1", "anon-1", "old-login"]);
        assert_eq!(
            Value::Object(person.properties),
            json!({"theme": "dark", "plan": "pro"})
        );
        assert!(person.identified);
        assert_eq!(c.identity_version(&p).unwrap(), 2);
        let mut pairs = c.person_overrides(&p).unwrap().pairs;
        pairs.sort();
        assert_eq!(
            pairs,
            [
                ("anon-1".to_owned(), "u1".to_owned()),
                ("old-login".to_owned(), "u1".to_owned())
            ]
        );
    }

    #[test]
    fn implicit_merges_never_join_two_identified_persons() {
        let (c, p) = setup();
        c.apply_identity(&p, &[merge_op("device", "alice", false)])
            .unwrap();
        // Bob logs in on Alice's device: the device stays Alice's.
        let out = c
            .apply_identity(&p, &[merge_op("device", "bob", false)])
            .unwrap();
        assert!(matches!(out[0], MergeOutcome::Refused(_)), "{out:?}");
        c.apply_identity(&p, &[set("carol", json!({}), true)])
            .unwrap();
        let out = c
            .apply_identity(&p, &[merge_op("carol", "bob", false)])
            .unwrap();
        assert!(matches!(out[0], MergeOutcome::Refused(_)), "{out:?}");
        // An alias does it.
        let out = c
            .apply_identity(&p, &[merge_op("carol", "bob", true)])
            .unwrap();
        assert!(matches!(out[0], MergeOutcome::Merged { .. }));
        assert_eq!(
            c.apply_identity(&p, &[merge_op("carol", "bob", false)])
                .unwrap()[0],
            MergeOutcome::AlreadyOne
        );
        assert_eq!(c.person(&p, "device").unwrap().unwrap().id, "alice");
    }

    #[test]
    fn merging_a_merged_person_moves_all_its_ids_and_keeps_the_survivor_s_properties() {
        let (c, p) = setup();
        c.apply_identity(
            &p,
            &[
                merge_op("a1", "u1", false),
                set("u1", json!({"plan": "free", "name": "Ann"}), true),
                set("u2", json!({"plan": "pro"}), true),
                merge_op("u1", "u2", true),
            ],
        )
        .unwrap();
        let person = c.person(&p, "a1").unwrap().unwrap();
        assert_eq!(person.id, "u2");
        assert_eq!(person.distinct_ids, ["u2", "a1", "u1"]);
        assert_eq!(
            Value::Object(person.properties),
            json!({"plan": "pro", "name": "Ann"})
        );
        assert!(c.person(&p, "nobody").unwrap().is_none());
    }

    #[test]
    fn groups_accumulate_properties() {
        let (c, p) = setup();
        let g = |set: Value| IdentityOp::Group {
            group_type: "company".into(),
            key: "acme".into(),
            set: obj(set),
        };
        c.apply_identity(&p, &[g(json!({"seats": 5})), g(json!({"name": "Acme"}))])
            .unwrap();
        let group = c.group(&p, "company", "acme").unwrap().unwrap();
        assert_eq!(
            Value::Object(group.properties),
            json!({"seats": 5, "name": "Acme"})
        );
        assert!(c.group(&p, "company", "other").unwrap().is_none());
    }
}
