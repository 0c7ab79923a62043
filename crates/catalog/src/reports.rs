//! Report definitions, their runs and deliveries. The catalog stores the definition as the JSON
//! the API took and the output of each run as JSON; the report crate decides what they mean.
//!
//! A scheduled run is keyed by (report, slot) with a unique index, and claiming a slot and moving
//! the report's next run happen in one transaction: however often Tally restarts, a slot runs
//! at most once. A run stores its output before any delivery starts, and each delivery records
//! its own outcome, so a restart resumes only the deliveries still pending.

use rusqlite::{OptionalExtension, params};
use tally_core::ProjectId;

use crate::{Catalog, CatalogError, Result, now_rfc3339};

/// A saved report as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub id: String,
    pub project: ProjectId,
    pub definition: String,
    /// The next scheduled slot, microseconds since the epoch; `None` when unscheduled.
    pub next_run_at: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

/// One run of a report: scheduled (with its `slot`) or on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    pub report_id: String,
    pub slot: Option<i64>,
    /// `schedule`, `catch_up` or `manual`.
    pub trigger: String,
    /// `pending` (claimed), `delivering` (rendered), `succeeded`, `failed` or `skipped`.
    pub status: String,
    /// The instant the report's relative time range was resolved against.
    pub at: i64,
    /// Only events received before this instant are counted.
    pub watermark: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub deliveries: Vec<DeliveryRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub channel: u32,
    pub kind: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

/// What to record when claiming a run.
#[derive(Debug, Clone)]
pub struct ClaimedRun<'a> {
    pub report_id: &'a str,
    pub slot: Option<i64>,
    pub trigger: &'a str,
    pub at: i64,
    pub watermark: i64,
    pub now: i64,
    /// The kind of each delivery channel, in order.
    pub channels: &'a [&'a str],
    /// The report's next slot after this one (scheduled runs).
    pub next_run_at: Option<i64>,
    /// The report's `next_run_at` this claim was computed from: if it changed meanwhile (the
    /// report was edited), nothing is claimed.
    pub expected_next: Option<i64>,
}

const REPORT_COLUMNS: &str = "id, project_id, definition, next_run_at, created_at, updated_at";
const RUN_COLUMNS: &str = "id, report_id, slot, trigger, status, at, watermark, started_at, \
                           finished_at, output, error";

fn report_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ReportRowRaw, ())> {
    Ok((
        ReportRowRaw {
            id: r.get(0)?,
            project: r.get(1)?,
            definition: r.get(2)?,
            next_run_at: r.get(3)?,
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
        },
        (),
    ))
}

struct ReportRowRaw {
    id: String,
    project: String,
    definition: String,
    next_run_at: Option<i64>,
    created_at: String,
    updated_at: String,
}

impl ReportRowRaw {
    fn into_row(self) -> Option<ReportRow> {
        Some(ReportRow {
            project: ProjectId::parse(&self.project)?,
            id: self.id,
            definition: self.definition,
            next_run_at: self.next_run_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        report_id: r.get(1)?,
        slot: r.get(2)?,
        trigger: r.get(3)?,
        status: r.get(4)?,
        at: r.get(5)?,
        watermark: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        output: r.get(9)?,
        error: r.get(10)?,
        deliveries: Vec::new(),
    })
}

fn deliveries(c: &rusqlite::Connection, run_id: &str) -> rusqlite::Result<Vec<DeliveryRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT channel, kind, status, attempts, next_attempt_at, last_error, delivered_at
         FROM report_deliveries WHERE run_id = ?1 ORDER BY channel",
    )?;
    stmt.query_map([run_id], |r| {
        Ok(DeliveryRow {
            channel: r.get(0)?,
            kind: r.get(1)?,
            status: r.get(2)?,
            attempts: r.get(3)?,
            next_attempt_at: r.get(4)?,
            last_error: r.get(5)?,
            delivered_at: r.get(6)?,
        })
    })?
    .collect()
}

fn not_found(id: &str) -> CatalogError {
    CatalogError::NotFound {
        what: "report",
        name: id.to_owned(),
    }
}

impl Catalog {
    pub fn create_report(
        &self,
        project: &ProjectId,
        id: &str,
        definition: &str,
        next_run_at: Option<i64>,
    ) -> Result<()> {
        let now = now_rfc3339();
        self.with(|c| {
            c.execute(
                "INSERT INTO reports(id, project_id, definition, next_run_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![id, project.as_str(), definition, next_run_at, now],
            )?;
            Ok(())
        })
    }

    /// Replaces a report's definition and next slot.
    pub fn update_report(
        &self,
        project: &ProjectId,
        id: &str,
        definition: &str,
        next_run_at: Option<i64>,
    ) -> Result<()> {
        let now = now_rfc3339();
        self.with(|c| {
            let n = c.execute(
                "UPDATE reports SET definition = ?3, next_run_at = ?4, updated_at = ?5
                 WHERE id = ?1 AND project_id = ?2",
                params![id, project.as_str(), definition, next_run_at, now],
            )?;
            if n == 0 {
                return Err(not_found(id));
            }
            Ok(())
        })
    }

    /// One of the project's reports (another project's is not found).
    pub fn report(&self, project: &ProjectId, id: &str) -> Result<ReportRow> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?1 AND project_id = ?2"),
                params![id, project.as_str()],
                report_row,
            )
            .optional()?
            .and_then(|(r, ())| r.into_row())
            .ok_or_else(|| not_found(id))
        })
    }

    pub fn reports(&self, project: &ProjectId) -> Result<Vec<ReportRow>> {
        self.query_reports(
            &format!(
                "SELECT {REPORT_COLUMNS} FROM reports WHERE project_id = ?1 ORDER BY created_at, id"
            ),
            params![project.as_str()],
        )
    }

    /// A report of any project, by id (for the scheduler).
    pub fn report_by_id(&self, id: &str) -> Result<Option<ReportRow>> {
        Ok(self
            .query_reports(
                &format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?1"),
                params![id],
            )?
            .pop())
    }

    /// Every report whose next slot is at or before `now`.
    pub fn due_reports(&self, now: i64) -> Result<Vec<ReportRow>> {
        self.query_reports(
            &format!(
                "SELECT {REPORT_COLUMNS} FROM reports
                 WHERE next_run_at IS NOT NULL AND next_run_at <= ?1 ORDER BY next_run_at"
            ),
            params![now],
        )
    }

    fn query_reports(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<ReportRow>> {
        self.with(|c| {
            let mut stmt = c.prepare(sql)?;
            let rows = stmt
                .query_map(args, report_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(r, ())| r.into_row())
                .collect())
        })
    }

    /// Deletes a report with its runs. Returns false when there was none.
    pub fn delete_report(&self, project: &ProjectId, id: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM reports WHERE id = ?1 AND project_id = ?2",
                params![id, project.as_str()],
            )? > 0)
        })
    }

    /// Claims a run: records it with a pending delivery per channel and, for a scheduled run,
    /// moves the report to its next slot, all in one transaction. Returns the run's id, or
    /// `None` when the slot was claimed before (then only the next slot is moved).
    pub fn claim_run(&self, run: &ClaimedRun<'_>) -> Result<Option<String>> {
        let id = uuid::Uuid::now_v7().to_string();
        self.with(|c| {
            let tx = c.transaction()?;
            let inserted = tx.execute(
                "INSERT INTO report_runs(id, report_id, slot, trigger, status, at, watermark, started_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7)
                 ON CONFLICT(report_id, slot) DO NOTHING",
                params![id, run.report_id, run.slot, run.trigger, run.at, run.watermark, run.now],
            )? == 1;
            if inserted {
                for (i, kind) in run.channels.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO report_deliveries(run_id, channel, kind, status, next_attempt_at)
                         VALUES (?1, ?2, ?3, 'pending', ?4)",
                        params![id, i as u32, kind, run.now],
                    )?;
                }
            }
            if run.slot.is_some() {
                let moved = tx.execute(
                    "UPDATE reports SET next_run_at = ?2 WHERE id = ?1 AND next_run_at IS ?3",
                    params![run.report_id, run.next_run_at, run.expected_next],
                )?;
                if moved == 0 {
                    // Edited since it was read: the new schedule stands, nothing is claimed.
                    return Ok(None);
                }
            }
            tx.commit()?;
            Ok(inserted.then_some(id))
        })
    }

    /// Records a slot that was skipped (missed while Tally was down, with the skip policy) and
    /// moves the report to its next slot.
    pub fn skip_slot(&self, report_id: &str, slot: i64, now: i64, next: Option<i64>) -> Result<()> {
        let id = uuid::Uuid::now_v7().to_string();
        self.with(|c| {
            let tx = c.transaction()?;
            let current: Option<Option<i64>> = tx
                .query_row("SELECT next_run_at FROM reports WHERE id = ?1", [report_id], |r| r.get(0))
                .optional()?;
            if current != Some(Some(slot)) {
                // Edited (or deleted) since it was read.
                return Ok(());
            }
            tx.execute(
                "INSERT INTO report_runs(id, report_id, slot, trigger, status, at, watermark, started_at, finished_at)
                 VALUES (?1, ?2, ?3, 'schedule', 'skipped', ?3, ?3, ?4, ?4)
                 ON CONFLICT(report_id, slot) DO NOTHING",
                params![id, report_id, slot, now],
            )?;
            tx.execute(
                "UPDATE reports SET next_run_at = ?2 WHERE id = ?1",
                params![report_id, next],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Stores a run's output; the run moves on to its deliveries (or succeeds if it has none).
    pub fn set_run_output(&self, run_id: &str, output: &str, now: i64) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE report_runs SET output = ?2, status = 'delivering' WHERE id = ?1",
                params![run_id, output],
            )?;
            settle(&tx, run_id, now)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Marks a run failed before it could render (its deliveries are dropped).
    pub fn fail_run(&self, run_id: &str, error: &str, now: i64) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE report_runs SET status = 'failed', error = ?2, finished_at = ?3 WHERE id = ?1",
                params![run_id, error, now],
            )?;
            tx.execute(
                "UPDATE report_deliveries SET status = 'failed', last_error = ?2
                 WHERE run_id = ?1 AND status = 'pending'",
                params![run_id, "the report could not be rendered"],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Records one delivery attempt. On failure, `retry_at` is when to try again (`None`: give
    /// up). The run succeeds once every delivery did, and fails once none is pending and one
    /// failed.
    pub fn record_delivery(
        &self,
        run_id: &str,
        channel: u32,
        outcome: std::result::Result<(), String>,
        now: i64,
        retry_at: Option<i64>,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            match &outcome {
                Ok(()) => tx.execute(
                    "UPDATE report_deliveries SET status = 'delivered', attempts = attempts + 1,
                     delivered_at = ?3, last_error = NULL WHERE run_id = ?1 AND channel = ?2",
                    params![run_id, channel, now],
                )?,
                Err(e) => tx.execute(
                    "UPDATE report_deliveries SET attempts = attempts + 1, last_error = ?3,
                     status = CASE WHEN ?4 IS NULL THEN 'failed' ELSE 'pending' END,
                     next_attempt_at = COALESCE(?4, next_attempt_at)
                     WHERE run_id = ?1 AND channel = ?2",
                    params![run_id, channel, e, retry_at],
                )?,
            };
            settle(&tx, run_id, now)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Finishes a rendered run whose deliveries are all done (recorded outcomes settle their
    /// run themselves; this is for runs found open with nothing pending).
    pub fn settle_run(&self, run_id: &str, now: i64) -> Result<()> {
        self.with(|c| settle(c, run_id, now))
    }

    /// Runs not finished yet (claimed but not rendered, or with deliveries pending).
    pub fn open_runs(&self) -> Result<Vec<RunRow>> {
        self.query_runs(
            &format!(
                "SELECT {RUN_COLUMNS} FROM report_runs WHERE status IN ('pending', 'delivering')
                 ORDER BY started_at"
            ),
            params![],
        )
    }

    /// A report's latest runs, newest first.
    pub fn runs(&self, report_id: &str, limit: u32) -> Result<Vec<RunRow>> {
        self.query_runs(
            &format!(
                "SELECT {RUN_COLUMNS} FROM report_runs WHERE report_id = ?1
                 ORDER BY started_at DESC, id DESC LIMIT ?2"
            ),
            params![report_id, limit],
        )
    }

    pub fn run(&self, report_id: &str, run_id: &str) -> Result<RunRow> {
        self.query_runs(
            &format!("SELECT {RUN_COLUMNS} FROM report_runs WHERE report_id = ?1 AND id = ?2"),
            params![report_id, run_id],
        )?
        .pop()
        .ok_or_else(|| CatalogError::NotFound {
            what: "run",
            name: run_id.to_owned(),
        })
    }

    fn query_runs(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<RunRow>> {
        self.with(|c| {
            let mut stmt = c.prepare(sql)?;
            let mut runs = stmt
                .query_map(args, run_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for r in &mut runs {
                r.deliveries = deliveries(c, &r.id)?;
            }
            Ok(runs)
        })
    }
}

/// Sets a rendered run's final status once no delivery is pending: `failed` (with the first
/// failure) if one failed, else `succeeded`.
fn settle(c: &rusqlite::Connection, run_id: &str, now: i64) -> Result<()> {
    c.execute(
        "UPDATE report_runs SET
                   status = CASE WHEN EXISTS(SELECT 1 FROM report_deliveries
                                             WHERE run_id = ?1 AND status = 'failed')
                                 THEN 'failed' ELSE 'succeeded' END,
                   error = (SELECT 'delivery ' || channel || ' (' || kind || '): ' || last_error
                            FROM report_deliveries WHERE run_id = ?1 AND status = 'failed'
                            ORDER BY channel LIMIT 1),
                   finished_at = ?2
                 WHERE id = ?1 AND status = 'delivering'
                   AND NOT EXISTS(SELECT 1 FROM report_deliveries
                                  WHERE run_id = ?1 AND status = 'pending')",
        params![run_id, now],
    )?;
    Ok(())
}

/// Replaces every JSON string (value or key) equal to one of `ids` in the stored outputs of the
/// project's report runs by `"[erased]"`, so that an erased person's id does not live on in a
/// past run (a report broken down by user, say). Returns how many runs changed.
pub(crate) fn redact_run_outputs(
    tx: &rusqlite::Transaction<'_>,
    project: &ProjectId,
    ids: &[String],
) -> Result<u64> {
    let mut changed = 0u64;
    for id in ids {
        // The JSON text of the id, as it would appear in the output.
        let needle = serde_json::Value::String(id.clone()).to_string();
        let rows: Vec<(String, String)> = {
            let mut st = tx.prepare(
                "SELECT r.id, r.output FROM report_runs r JOIN reports p ON p.id = r.report_id
                 WHERE p.project_id = ?1 AND r.output IS NOT NULL AND instr(r.output, ?2) > 0",
            )?;
            st.query_map(params![project.as_str(), needle], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        for (run, output) in rows {
            let mut value: serde_json::Value = serde_json::from_str(&output)?;
            if redact(&mut value, id) {
                tx.execute(
                    "UPDATE report_runs SET output = ?2 WHERE id = ?1",
                    params![run, value.to_string()],
                )?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}

/// Replaces strings and keys equal to `id` inside `value`; true when something changed.
fn redact(value: &mut serde_json::Value, id: &str) -> bool {
    use serde_json::Value;
    const ERASED: &str = "[erased]";
    match value {
        Value::String(s) if s == id => {
            *s = ERASED.to_owned();
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |acc, v| redact(v, id) | acc),
        Value::Object(map) => {
            let mut changed = false;
            if let Some(v) = map.remove(id) {
                map.insert(ERASED.to_owned(), v);
                changed = true;
            }
            map.values_mut().fold(changed, |acc, v| redact(v, id) | acc)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim<'a>(report: &'a str, slot: Option<i64>, channels: &'a [&'a str]) -> ClaimedRun<'a> {
        ClaimedRun {
            report_id: report,
            slot,
            trigger: "schedule",
            at: 100,
            watermark: 95,
            now: 101,
            channels,
            next_run_at: Some(200),
            expected_next: Some(100),
        }
    }

    #[test]
    fn a_slot_is_claimed_once_and_deliveries_settle_the_run() {
        let c = Catalog::open_in_memory().unwrap();
        let p = c.create_project("shop").unwrap().id;
        c.create_report(&p, "r1", "{}", Some(100)).unwrap();
        assert_eq!(c.due_reports(99).unwrap().len(), 0);
        assert_eq!(c.due_reports(100).unwrap().len(), 1);
        let run = c
            .claim_run(&claim("r1", Some(100), &["webhook", "directory"]))
            .unwrap()
            .unwrap();
        assert_eq!(c.report(&p, "r1").unwrap().next_run_at, Some(200));
        assert_eq!(
            c.claim_run(&claim("r1", Some(100), &["webhook"])).unwrap(),
            None
        );
        assert_eq!(c.open_runs().unwrap().len(), 1);
        c.set_run_output(&run, "{\"x\":1}", 102).unwrap();
        c.record_delivery(&run, 0, Err("503".into()), 103, Some(110))
            .unwrap();
        c.record_delivery(&run, 1, Ok(()), 103, None).unwrap();
        let r = c.run("r1", &run).unwrap();
        assert_eq!(r.status, "delivering");
        assert_eq!(r.deliveries[0].attempts, 1);
        assert_eq!(r.deliveries[0].next_attempt_at, 110);
        c.record_delivery(&run, 0, Ok(()), 111, None).unwrap();
        let r = c.run("r1", &run).unwrap();
        assert_eq!((r.status.as_str(), r.finished_at), ("succeeded", Some(111)));
        assert!(c.open_runs().unwrap().is_empty());
    }

    #[test]
    fn a_given_up_delivery_fails_the_run_and_reports_are_per_project() {
        let c = Catalog::open_in_memory().unwrap();
        let p = c.create_project("shop").unwrap().id;
        let q = c.create_project("other").unwrap().id;
        c.create_report(&p, "r1", "{}", None).unwrap();
        assert!(matches!(
            c.report(&q, "r1"),
            Err(CatalogError::NotFound { .. })
        ));
        assert!(!c.delete_report(&q, "r1").unwrap());
        let run = c
            .claim_run(&claim("r1", None, &["email"]))
            .unwrap()
            .unwrap();
        c.set_run_output(&run, "{}", 1).unwrap();
        c.record_delivery(&run, 0, Err("550 no such user".into()), 2, None)
            .unwrap();
        let r = c.run("r1", &run).unwrap();
        assert_eq!(r.status, "failed");
        assert_eq!(
            r.error.as_deref(),
            Some("delivery 0 (email): 550 no such user")
        );
        c.update_report(&p, "r1", "{}", Some(500)).unwrap();
        // A skip computed from a stale read changes nothing.
        c.skip_slot("r1", 400, 600, Some(700)).unwrap();
        assert_eq!(c.report(&p, "r1").unwrap().next_run_at, Some(500));
        c.skip_slot("r1", 500, 600, Some(700)).unwrap();
        assert_eq!(c.report(&p, "r1").unwrap().next_run_at, Some(700));
        assert_eq!(c.runs("r1", 10).unwrap()[0].status, "skipped");
        assert!(c.delete_report(&p, "r1").unwrap());
        assert!(c.runs("r1", 10).unwrap().is_empty());
    }

    #[test]
    fn redaction_replaces_the_id_wherever_it_is_a_whole_string() {
        let mut v = serde_json::json!({
            "rows": [["alice", 3], ["alice-2", 1]],
            "by": {"alice": 3},
            "note": "alice"
        });
        assert!(redact(&mut v, "alice"));
        assert_eq!(
            v,
            serde_json::json!({
                "rows": [["[erased]", 3], ["alice-2", 1]],
                "by": {"[erased]": 3},
                "note": "[erased]"
            })
        );
        assert!(!redact(&mut v, "bob"));
    }
}
