//! Saved reports and their run history as the API and the CLI show them. Shared by both, so a
//! report saved either way is checked the same.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tally_catalog::{Catalog, CatalogError, ReportRow, RunRow};
use tally_core::time::format_rfc3339;
use tally_core::{FieldError, ProjectId};

use crate::ReportError;
use crate::definition::ReportDefinition;
use crate::scheduler::first_slot;

/// At most this many reports per project.
pub const MAX_REPORTS_PER_PROJECT: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct SavedReport {
    pub id: String,
    #[serde(flatten)]
    pub definition: ReportDefinition,
    /// The next scheduled run, if the report has a schedule.
    pub next_run_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn instant(us: i64) -> String {
    format_rfc3339(DateTime::from_timestamp_micros(us).unwrap_or_default())
}

impl SavedReport {
    pub fn from_row(row: &ReportRow) -> Result<Self, ReportError> {
        Ok(Self {
            id: row.id.clone(),
            definition: serde_json::from_str(&row.definition)?,
            next_run_at: row.next_run_at.map(instant),
            created_at: row.created_at.clone(),
            updated_at: row.updated_at.clone(),
        })
    }
}

/// The first slot of a definition with a schedule; a schedule that never comes is refused.
fn checked_first_slot(
    def: &ReportDefinition,
    now: DateTime<Utc>,
) -> Result<Option<i64>, ReportError> {
    let slot = first_slot(def, now)?;
    if def.schedule.is_some() && slot.is_none() {
        return Err(FieldError::new(
            "invalid_cron",
            "schedule.cron",
            "the expression never matches a time after now (a 30th of February?)",
        )
        .into());
    }
    Ok(slot)
}

/// Checks and saves a new report; its first slot is the schedule's next after `now`.
pub fn create_report(
    catalog: &Catalog,
    project: &ProjectId,
    body: Value,
    now: DateTime<Utc>,
) -> Result<SavedReport, ReportError> {
    let def = ReportDefinition::from_json(body)?;
    if catalog.reports(project)?.len() >= MAX_REPORTS_PER_PROJECT {
        return Err(FieldError::new(
            "too_many_reports",
            "",
            format!("a project may have at most {MAX_REPORTS_PER_PROJECT} reports"),
        )
        .into());
    }
    let id = format!("rpt_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    catalog.create_report(
        project,
        &id,
        &serde_json::to_string(&def)?,
        checked_first_slot(&def, now)?,
    )?;
    SavedReport::from_row(&catalog.report(project, &id)?)
}

/// Replaces a report's definition; its schedule starts again from `now`.
pub fn update_report(
    catalog: &Catalog,
    project: &ProjectId,
    id: &str,
    body: Value,
    now: DateTime<Utc>,
) -> Result<SavedReport, ReportError> {
    let def = ReportDefinition::from_json(body)?;
    catalog.update_report(
        project,
        id,
        &serde_json::to_string(&def)?,
        checked_first_slot(&def, now)?,
    )?;
    SavedReport::from_row(&catalog.report(project, id)?)
}

/// A report's definition, checked again (it was checked when saved).
pub fn load_report(
    catalog: &Catalog,
    project: &ProjectId,
    id: &str,
) -> Result<(ReportRow, ReportDefinition), ReportError> {
    let row = catalog.report(project, id)?;
    let def = serde_json::from_str(&row.definition)?;
    Ok((row, def))
}

/// One run as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: String,
    pub report_id: String,
    /// `schedule`, `catch_up` or `manual`.
    pub trigger: String,
    /// `pending`, `delivering`, `succeeded`, `failed` or `skipped`.
    pub status: String,
    /// The scheduled slot this run is for.
    pub slot: Option<String>,
    pub at: String,
    pub watermark: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub channel: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

impl From<&RunRow> for RunView {
    fn from(r: &RunRow) -> Self {
        Self {
            id: r.id.clone(),
            report_id: r.report_id.clone(),
            trigger: r.trigger.clone(),
            status: r.status.clone(),
            slot: r.slot.map(instant),
            at: instant(r.at),
            watermark: instant(r.watermark),
            started_at: instant(r.started_at),
            finished_at: r.finished_at.map(instant),
            duration_ms: r.finished_at.map(|f| (f - r.started_at) / 1000),
            error: r.error.clone(),
            deliveries: r
                .deliveries
                .iter()
                .map(|d| DeliveryView {
                    channel: d.channel,
                    kind: d.kind.clone(),
                    status: d.status.clone(),
                    attempts: d.attempts,
                    next_attempt_at: (d.status == "pending").then(|| instant(d.next_attempt_at)),
                    last_error: d.last_error.clone(),
                    delivered_at: d.delivered_at.map(instant),
                })
                .collect(),
        }
    }
}

/// A report's runs, newest first, checking the report belongs to the project.
pub fn runs(
    catalog: &Catalog,
    project: &ProjectId,
    id: &str,
    limit: u32,
) -> Result<Vec<RunView>, ReportError> {
    catalog.report(project, id)?;
    Ok(catalog.runs(id, limit)?.iter().map(RunView::from).collect())
}

/// Whether an error means "no such report or run".
pub fn is_not_found(e: &ReportError) -> bool {
    matches!(e, ReportError::Catalog(CatalogError::NotFound { .. }))
}
