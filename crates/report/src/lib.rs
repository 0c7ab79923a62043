//! Reports: the origin's `ReportGenerator` (a report's sections run for an instant and written
//! as JSON, CSV or HTML), `ReportScheduler` (cron schedules in a time zone, run once per slot
//! whatever crashes) and delivery (a directory, a signed webhook, email over SMTP).
//!
//! This crate reads events only through the query layer and never writes them.

mod definition;
mod delivery;
mod generator;
pub mod render;
mod saved;
mod schedule;
mod scheduler;

pub use definition::{
    CatchUp, Channel, Display, MAX_CHANNELS, MAX_RECIPIENTS, MAX_SECTIONS, RelativeRange,
    ReportDefinition, Schedule, Section, range_spec,
};
pub use delivery::{
    Deliverer, DeliveryConfig, DeliveryError, MAX_WEBHOOK_TIMEOUT, SmtpConfig, WEBHOOK_TIMEOUT,
    signature,
};
pub use generator::{RenderedReport, RenderedSection, ReportGenerator};
pub use saved::{
    DeliveryView, MAX_REPORTS_PER_PROJECT, RunView, SavedReport, create_report, is_not_found,
    load_report, runs, update_report,
};
pub use schedule::{Clock, CronSchedule, ManualClock, SystemClock, parse_cron};
pub use scheduler::{
    MAX_CONCURRENT_RUNS, ReportScheduler, SchedulerConfig, TickOutcome, first_slot,
    record_manual_run, schedule_of,
};
pub use tally_core::time::ResolvedRange;

use tally_core::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The definition or a request is wrong (a user error).
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Query(#[from] tally_query::QueryError),
    #[error(transparent)]
    Catalog(#[from] tally_catalog::CatalogError),
    #[error("drawing a chart: {0}")]
    Chart(#[from] tally_viz::ChartError),
    #[error("stored report JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Internal(String),
}
