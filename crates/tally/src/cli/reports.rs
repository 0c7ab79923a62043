//! `tally reports ...`: define, list, render and send reports, and read their run history.
//! Works on the data directory, beside a running server: the server schedules what is saved
//! here, and delivers the runs `send` records within a second.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use comfy_table::Table;
use tally_core::time::parse_rfc3339;
use tally_report::render;
use tally_report::{ReportError, ReportGenerator, RunView, SavedReport};
use tally_store::{EmbeddedStore, EmbeddedStoreConfig};

use super::{DataDirArg, open_catalog};

#[derive(Debug, clap::Args)]
pub(crate) struct ProjectArg {
    /// Project name or id (may be left out when there is only one project).
    #[arg(long)]
    project: Option<String>,
    #[command(flatten)]
    pub(crate) data: DataDirArg,
}

impl ProjectArg {
    /// The data directory's catalog and the project named (or the only one).
    pub(crate) fn open(
        &self,
    ) -> anyhow::Result<(Arc<tally_catalog::Catalog>, tally_catalog::Project)> {
        let catalog = open_catalog(&self.data.data_dir)?;
        let project = super::import::resolve_project(&catalog, self.project.as_deref())?;
        Ok((catalog, project))
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReportsCommand {
    /// Save a report (a JSON file as `POST /v1/reports` takes; `-` reads standard input).
    Create {
        file: PathBuf,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Replace a report's definition.
    Update {
        id: String,
        file: PathBuf,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// List the project's reports.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Print a report's definition as JSON.
    Show {
        id: String,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Delete a report and its run history.
    Delete {
        id: String,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Render a report now (read-only; nothing is delivered).
    Run {
        id: String,
        /// json, csv (a zip when the report has several sections), zip or html.
        #[arg(long, default_value = "json")]
        format: String,
        /// Resolve the time range at this instant (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
        /// Count only events received before this instant (default: `--at`, or now).
        #[arg(long)]
        watermark: Option<String>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Run a report now and deliver it to its channels (the running server delivers it).
    Send {
        id: String,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// A report's run history: status, duration, deliveries and errors.
    Runs {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
}

pub(crate) fn read_body(file: &PathBuf) -> anyhow::Result<serde_json::Value> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))
}

/// Report errors as a user reads them: the field, then the problem.
fn user_error(e: ReportError) -> anyhow::Error {
    match e {
        ReportError::Invalid(f) if f.field.is_empty() => {
            anyhow::anyhow!("{} ({})", f.message, f.code)
        }
        ReportError::Invalid(f) => anyhow::anyhow!("{}: {} ({})", f.field, f.message, f.code),
        ReportError::Query(tally_query::QueryError::Invalid(f)) => {
            anyhow::anyhow!("{}: {} ({})", f.field, f.message, f.code)
        }
        other => other.into(),
    }
}

fn instant(s: Option<&str>, flag: &str) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    s.map(|s| {
        parse_rfc3339(s).with_context(|| format!("{flag}: `{s}` is not an RFC 3339 timestamp"))
    })
    .transpose()
}

pub(crate) fn run(cmd: ReportsCommand) -> anyhow::Result<()> {
    let open = ProjectArg::open;
    let now = chrono::Utc::now();
    match cmd {
        ReportsCommand::Create { file, project } => {
            let body = read_body(&file)?;
            let (catalog, p) = open(&project)?;
            let saved =
                tally_report::create_report(&catalog, &p.id, body, now).map_err(user_error)?;
            println!("{}", saved.id);
            if let Some(next) = saved.next_run_at {
                eprintln!(
                    "saved report {} in project {}; next run {next}",
                    saved.id, p.name
                );
            }
        }
        ReportsCommand::Update { id, file, project } => {
            let body = read_body(&file)?;
            let (catalog, p) = open(&project)?;
            tally_report::update_report(&catalog, &p.id, &id, body, now).map_err(user_error)?;
            println!("updated report {id}");
        }
        ReportsCommand::List { json, project } => {
            let (catalog, p) = open(&project)?;
            let reports = catalog
                .reports(&p.id)?
                .iter()
                .map(SavedReport::from_row)
                .collect::<Result<Vec<_>, _>>()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            t.set_header(["id", "title", "range", "schedule", "next run", "deliver"]);
            for r in &reports {
                let d = &r.definition;
                t.add_row([
                    r.id.clone(),
                    d.title.clone(),
                    d.time_range.to_string(),
                    d.schedule.as_ref().map_or("-".into(), |s| s.cron.clone()),
                    r.next_run_at.clone().unwrap_or_else(|| "-".into()),
                    d.deliver
                        .iter()
                        .map(|c| c.kind())
                        .collect::<Vec<_>>()
                        .join(", "),
                ]);
            }
            println!("{t}");
        }
        ReportsCommand::Show { id, project } => {
            let (catalog, p) = open(&project)?;
            let row = catalog.report(&p.id, &id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&SavedReport::from_row(&row)?)?
            );
        }
        ReportsCommand::Delete { id, project } => {
            let (catalog, p) = open(&project)?;
            anyhow::ensure!(
                catalog.delete_report(&p.id, &id)?,
                "report `{id}` not found"
            );
            println!("deleted report {id}");
        }
        ReportsCommand::Run {
            id,
            format,
            at,
            watermark,
            output,
            project,
        } => {
            let (catalog, p) = open(&project)?;
            let (row, def) = tally_report::load_report(&catalog, &p.id, &id).map_err(user_error)?;
            let at = instant(at.as_deref(), "--at")?.unwrap_or(now);
            let watermark = instant(watermark.as_deref(), "--watermark")?.unwrap_or(at.min(now));
            let store = EmbeddedStore::open_read_only(
                EmbeddedStoreConfig::new(&project.data.data_dir),
                Arc::clone(&catalog),
            )?;
            let report = super::runtime()?
                .block_on(
                    ReportGenerator::new(Arc::new(store))
                        .generate(&p.id, &row.id, &def, at, watermark),
                )
                .map_err(user_error)?;
            let charts = tally_viz::ChartGenerator::new();
            let bytes = render::render(&report, &format, None, &charts)
                .map_err(user_error)?
                .bytes;
            match output {
                Some(path) => std::fs::write(&path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout().write_all(&bytes)?,
            }
        }
        ReportsCommand::Send { id, project } => {
            let (catalog, p) = open(&project)?;
            let run =
                tally_report::record_manual_run(&catalog, &p.id, &id, now).map_err(user_error)?;
            println!("{run}");
            eprintln!(
                "recorded run {run}; a running `tally serve` on this data directory delivers it"
            );
        }
        ReportsCommand::Runs {
            id,
            limit,
            json,
            project,
        } => {
            let (catalog, p) = open(&project)?;
            let runs = tally_report::runs(&catalog, &p.id, &id, limit.clamp(1, 1000))
                .map_err(user_error)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(());
            }
            print_runs(&runs);
        }
    }
    Ok(())
}

fn print_runs(runs: &[RunView]) {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header([
        "run",
        "trigger",
        "for",
        "status",
        "duration",
        "deliveries",
        "error",
    ]);
    for r in runs {
        let deliveries: Vec<String> = r
            .deliveries
            .iter()
            .map(|d| format!("{} {} ({}×)", d.kind, d.status, d.attempts))
            .collect();
        t.add_row([
            r.id.clone(),
            r.trigger.clone(),
            r.slot.clone().unwrap_or_else(|| r.at.clone()),
            r.status.clone(),
            r.duration_ms.map_or("-".into(), |d| format!("{d} ms")),
            deliveries.join(", "),
            r.error.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
}
