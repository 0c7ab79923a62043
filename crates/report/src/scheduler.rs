//! The origin's `ReportScheduler`: runs saved reports on their cron schedules and delivers them,
//! surviving restarts.
//!
//! Each tick (every second) it
//! 1. claims every due slot: one run per (report, slot), recorded with the report's next slot
//!    in one transaction, so a slot never runs twice whatever crashes;
//! 2. renders claimed runs (the output is stored before anything is delivered, with the instant
//!    and data watermark it was computed for);
//! 3. attempts the deliveries that are due, recording each outcome; failures are retried with
//!    exponential backoff until `max_attempts`.
//!
//! A slot that passed while Tally was down is run once on start (`catch_up: run_once`, the
//! latest missed slot), or recorded as skipped (`catch_up: skip`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tally_catalog::{Catalog, ClaimedRun, ReportRow, RunRow};
use tally_core::ProjectId;

use crate::ReportError;
use crate::definition::{CatchUp, ReportDefinition, parse_tz};
use crate::delivery::{Deliverer, DeliveryError};
use crate::generator::{RenderedReport, ReportGenerator};
use crate::schedule::{Clock, CronSchedule};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often the scheduler looks for due work.
    pub tick: Duration,
    /// The first retry waits this long; each later one twice as long (at most an hour).
    pub retry_base: Duration,
    /// A delivery is given up after this many attempts.
    pub max_attempts: u32,
    /// A slot found due later than this is treated as missed (the catch-up policy applies).
    pub grace: Duration,
    /// Scheduled runs count the events received up to this long before they start, so that
    /// requests still being written when the run starts cannot change a re-run's numbers.
    pub settle: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            retry_base: Duration::from_secs(30),
            max_attempts: 6,
            grace: Duration::from_secs(120),
            settle: Duration::from_secs(5),
        }
    }
}

/// Runs rendered and delivered at once by `run_forever`.
pub const MAX_CONCURRENT_RUNS: usize = 4;

/// What one tick did (for logs and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickOutcome {
    pub claimed: usize,
    pub skipped: usize,
    pub rendered: usize,
    pub delivered: usize,
    pub failed_attempts: usize,
}

#[derive(Debug)]
pub struct ReportScheduler {
    catalog: Arc<Catalog>,
    generator: ReportGenerator,
    deliverer: Deliverer,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
    /// When this scheduler started: slots overdue by more than the grace period then were
    /// missed while Tally was down.
    started: DateTime<Utc>,
    /// Runs being worked on, so that overlapping ticks never both work on one.
    busy: Mutex<HashSet<String>>,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn instant(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// The schedule of a definition, if it has one.
pub fn schedule_of(def: &ReportDefinition) -> Result<Option<CronSchedule>, ReportError> {
    let Some(s) = &def.schedule else {
        return Ok(None);
    };
    let tz = match &s.timezone {
        Some(t) => parse_tz(Some(t), "schedule.timezone")?,
        None => def.tz(),
    };
    Ok(Some(CronSchedule::new(&s.cron, tz)?))
}

/// The first slot of a definition after `now` (what a saved report starts with).
pub fn first_slot(def: &ReportDefinition, now: DateTime<Utc>) -> Result<Option<i64>, ReportError> {
    Ok(schedule_of(def)?
        .and_then(|s| s.next_after(now))
        .map(micros))
}

/// Records a run of the report for `now` (trigger `manual`, counting everything received so
/// far) with a pending delivery per channel; a scheduler delivers it. Returns its id.
pub fn record_manual_run(
    catalog: &Catalog,
    project: &ProjectId,
    report_id: &str,
    now: DateTime<Utc>,
) -> Result<String, ReportError> {
    let row = catalog.report(project, report_id)?;
    let def = ReportDefinition::from_json(serde_json::from_str(&row.definition)?)?;
    let kinds: Vec<&str> = def.deliver.iter().map(|c| c.kind()).collect();
    catalog
        .claim_run(&ClaimedRun {
            report_id,
            slot: None,
            trigger: "manual",
            at: micros(now),
            watermark: micros(now),
            now: micros(now),
            channels: &kinds,
            next_run_at: None,
            expected_next: None,
        })?
        .ok_or_else(|| ReportError::Internal("a manual run could not be recorded".into()))
}

impl ReportScheduler {
    pub fn new(
        catalog: Arc<Catalog>,
        generator: ReportGenerator,
        deliverer: Deliverer,
        clock: Arc<dyn Clock>,
        config: SchedulerConfig,
    ) -> Self {
        let started = clock.now();
        Self {
            catalog,
            generator,
            deliverer,
            clock,
            config,
            started,
            busy: Mutex::new(HashSet::new()),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn generator(&self) -> &ReportGenerator {
        &self.generator
    }

    pub fn deliverer(&self) -> &Deliverer {
        &self.deliverer
    }

    /// Ticks until the task is dropped. Claiming never waits for rendering or delivery: runs
    /// are worked on in tasks of their own, at most [`MAX_CONCURRENT_RUNS`] at once.
    pub async fn run_forever(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.config.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_RUNS));
        loop {
            interval.tick().await;
            if let Err(e) = self.claim_due_slots(&mut TickOutcome::default()) {
                tracing::error!(error = %e, "claiming report slots failed");
            }
            let runs = match self.catalog.open_runs() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "reading open report runs failed");
                    continue;
                }
            };
            for run in runs {
                if self.busy.lock().contains(&run.id) {
                    continue;
                }
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    break;
                };
                let me = Arc::clone(&self);
                tokio::spawn(async move {
                    me.work_on(run, &mut TickOutcome::default()).await;
                    drop(permit);
                });
            }
        }
    }

    /// One pass, done in order: claim due slots, render claimed runs, attempt due deliveries.
    pub async fn tick(&self) -> Result<TickOutcome, ReportError> {
        let mut outcome = TickOutcome::default();
        self.claim_due_slots(&mut outcome)?;
        for run in self.catalog.open_runs()? {
            self.work_on(run, &mut outcome).await;
        }
        Ok(outcome)
    }

    fn claim_due_slots(&self, outcome: &mut TickOutcome) -> Result<(), ReportError> {
        let now = self.clock.now();
        for row in self.catalog.due_reports(micros(now))? {
            if let Err(e) = self.claim_due(&row, now, outcome) {
                tracing::error!(report = %row.id, error = %e, "claiming a report's slot failed");
            }
        }
        Ok(())
    }

    fn claim_due(
        &self,
        row: &ReportRow,
        now: DateTime<Utc>,
        outcome: &mut TickOutcome,
    ) -> Result<(), ReportError> {
        let def = ReportDefinition::from_json(serde_json::from_str(&row.definition)?)?;
        let (Some(schedule), Some(slot)) = (schedule_of(&def)?, row.next_run_at) else {
            return Ok(());
        };
        let next = schedule.next_after(now).map(micros);
        // Missed while down: already overdue by more than the grace period when this scheduler
        // started. (While it runs, claiming never waits for work, so slots are claimed on time.)
        let grace = chrono::Duration::from_std(self.config.grace).unwrap_or_default();
        let late = instant(slot) + grace < self.started;
        let catch_up = def
            .schedule
            .as_ref()
            .map(|s| s.catch_up)
            .unwrap_or_default();
        let (slot, trigger) = match (late, catch_up) {
            (false, _) => (slot, "schedule"),
            (true, CatchUp::Skip) => {
                tracing::info!(report = %row.id, slot = %instant(slot), "skipping a slot missed while down");
                self.catalog.skip_slot(&row.id, slot, micros(now), next)?;
                outcome.skipped += 1;
                return Ok(());
            }
            // The latest missed slot, once.
            (true, CatchUp::RunOnce) => (
                schedule
                    .latest_at_or_before(now)
                    .map_or(slot, micros)
                    .max(slot),
                "catch_up",
            ),
        };
        let kinds: Vec<&str> = def.deliver.iter().map(|c| c.kind()).collect();
        let watermark =
            micros(now - chrono::Duration::from_std(self.config.settle).unwrap_or_default())
                .max(slot);
        let claimed = self.catalog.claim_run(&ClaimedRun {
            report_id: &row.id,
            slot: Some(slot),
            trigger,
            at: slot,
            watermark,
            now: micros(now),
            channels: &kinds,
            next_run_at: next,
            expected_next: row.next_run_at,
        })?;
        if claimed.is_some() {
            tracing::info!(report = %row.id, slot = %instant(slot), trigger, "report run claimed");
            outcome.claimed += 1;
        }
        Ok(())
    }

    async fn work_on(&self, run: RunRow, outcome: &mut TickOutcome) {
        if !self.busy.lock().insert(run.id.clone()) {
            return;
        }
        let id = run.id.clone();
        if let Err(e) = self.advance(run, outcome).await {
            tracing::error!(run = %id, error = %e, "working on a report run failed");
        }
        self.busy.lock().remove(&id);
    }

    async fn advance(&self, run: RunRow, outcome: &mut TickOutcome) -> Result<(), ReportError> {
        let now = self.clock.now();
        if run.output.is_some() {
            if !run.deliveries.iter().any(|d| d.status == "pending") {
                // Rendered, every delivery recorded: only the final status is missing.
                self.catalog.settle_run(&run.id, micros(now))?;
                return Ok(());
            }
            if !run
                .deliveries
                .iter()
                .any(|d| d.status == "pending" && d.next_attempt_at <= micros(now))
            {
                // Waiting for a retry: nothing to read or parse until it is due.
                return Ok(());
            }
        }
        let Some(row) = self.catalog.report_by_id(&run.report_id)? else {
            return Ok(());
        };
        let parsed = serde_json::from_str(&row.definition)
            .map_err(ReportError::from)
            .and_then(|v| ReportDefinition::from_json(v).map_err(ReportError::from));
        let def = match parsed {
            Ok(d) => d,
            Err(e) => {
                // Not something time mends: fail the run once rather than retry it forever.
                self.catalog.fail_run(
                    &run.id,
                    &format!("the stored definition is invalid: {e}"),
                    micros(now),
                )?;
                return Ok(());
            }
        };
        let output = match &run.output {
            Some(o) => o.clone(),
            None => {
                let rendered = self
                    .generator
                    .generate(
                        &row.project,
                        &row.id,
                        &def,
                        instant(run.at),
                        instant(run.watermark),
                    )
                    .await;
                match rendered {
                    Ok(r) => {
                        let o = serde_json::to_string(&r)?;
                        self.catalog
                            .set_run_output(&run.id, &o, micros(self.clock.now()))?;
                        outcome.rendered += 1;
                        o
                    }
                    Err(e) => {
                        tracing::warn!(run = %run.id, error = %e, "a report run could not be rendered");
                        self.catalog
                            .fail_run(&run.id, &e.to_string(), micros(now))?;
                        return Ok(());
                    }
                }
            }
        };
        let report: RenderedReport = serde_json::from_str(&output)?;
        for d in run.deliveries.iter().filter(|d| d.status == "pending") {
            if d.next_attempt_at > micros(self.clock.now()) {
                continue;
            }
            // The channel as the definition holds it now (a report edited between attempts
            // delivers to its new address).
            let Some(channel) = def
                .deliver
                .get(d.channel as usize)
                .filter(|c| c.kind() == d.kind)
            else {
                self.catalog.record_delivery(
                    &run.id,
                    d.channel,
                    Err("the report's channels changed since this run started".into()),
                    micros(self.clock.now()),
                    None,
                )?;
                continue;
            };
            let result = self
                .deliverer
                .deliver(channel, &report, &run.id, d.channel)
                .await;
            let now = self.clock.now();
            match result {
                Ok(where_) => {
                    tracing::info!(run = %run.id, channel = d.channel, kind = channel.kind(), to = %where_, "report delivered");
                    self.catalog
                        .record_delivery(&run.id, d.channel, Ok(()), micros(now), None)?;
                    outcome.delivered += 1;
                }
                Err(e) => {
                    outcome.failed_attempts += 1;
                    let attempts = d.attempts + 1;
                    let retry_at = match &e {
                        DeliveryError::Retryable(_) if attempts < self.config.max_attempts => {
                            Some(micros(now + self.backoff(attempts)))
                        }
                        _ => None,
                    };
                    tracing::warn!(run = %run.id, channel = d.channel, kind = channel.kind(), attempts, error = %e, will_retry = retry_at.is_some(), "report delivery failed");
                    self.catalog.record_delivery(
                        &run.id,
                        d.channel,
                        Err(e.to_string()),
                        micros(now),
                        retry_at,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The wait before attempt `attempts + 1`: base, 2×base, 4×base, ... at most an hour.
    fn backoff(&self, attempts: u32) -> chrono::Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        let wait = self
            .config
            .retry_base
            .saturating_mul(factor)
            .min(Duration::from_secs(3600));
        chrono::Duration::from_std(wait).unwrap_or_default()
    }
}
