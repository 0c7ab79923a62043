//! The command line: `tally serve`, `tally project ...`, `tally schemas ...`, `tally rules ...`,
//! `tally reports ...`, `tally dashboards ...`, `tally query`, `tally import`, `tally keys ...`,
//! `tally retention ...`, `tally persons erase`, `tally audit list`, `tally users ...`.

mod dashboards;
mod import;
mod keys;
mod persons;
mod project;
mod query;
mod reports;
mod retention;
mod rules;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tally_server::ServeConfig;

#[derive(Debug, Parser)]
#[command(name = "tally", version, about = "Self-hosted usage analytics")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (HTTP ingest and query) on the embedded store.
    Serve(ServeConfig),
    /// Create and list projects.
    #[command(subcommand)]
    Project(project::ProjectCommand),
    /// Register typed event schemas.
    #[command(subcommand)]
    Schemas(project::SchemaCommand),
    /// Run aggregation rules (the body of `POST /v1/query`) and print the results.
    Query(query::QueryArgs),
    /// Save, list and delete aggregation rules (kept live as rollups by the server).
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Define, render and send reports; read their run history.
    #[command(subcommand)]
    Reports(reports::ReportsCommand),
    /// Save, list and delete dashboards; create and revoke their read-only share links.
    #[command(subcommand)]
    Dashboards(dashboards::DashboardsCommand),
    /// Import newline-delimited JSON events (optionally .gz) with the BatchProcessor.
    Import(import::ImportArgs),
    /// List, create, rotate and revoke a project's API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Set, list and clear retention policies; remove expired events now.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// Erase a person (the right to erasure).
    #[command(subcommand)]
    Persons(persons::PersonsCommand),
    /// Read the audit log of erasures.
    #[command(subcommand)]
    Audit(persons::AuditCommand),
    /// Web UI accounts and their roles per project.
    #[command(subcommand)]
    Users(users::UsersCommand),
}

/// The data directory flag shared by the commands that open it.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DataDirArg {
    /// Where Tally keeps everything.
    #[arg(long, env = "TALLY_DATA_DIR", default_value = "./tally-data")]
    pub(crate) data_dir: PathBuf,
}

pub(crate) fn run() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(config) => runtime().and_then(|rt| {
            rt.block_on(tally_server::serve(config))
                .map_err(anyhow::Error::from)
        }),
        Command::Project(cmd) => project::run_project(cmd),
        Command::Schemas(cmd) => project::run_schemas(cmd),
        Command::Rules(cmd) => rules::run(cmd),
        Command::Reports(cmd) => reports::run(cmd),
        Command::Dashboards(cmd) => dashboards::run(cmd),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Retention(cmd) => runtime().and_then(|rt| rt.block_on(retention::run(cmd))),
        Command::Persons(cmd) => runtime().and_then(|rt| rt.block_on(persons::run_persons(cmd))),
        Command::Audit(cmd) => persons::run_audit(cmd),
        Command::Users(cmd) => users::run(cmd),
        Command::Query(args) => runtime().and_then(|rt| rt.block_on(query::run(args))),
        Command::Import(args) => runtime().and_then(|rt| rt.block_on(import::run(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The embedded store of `data_dir`, for commands that work on it directly; while a server
/// holds it, the error says so and adds `hint` (what to do instead).
pub(crate) fn open_store(
    data_dir: &std::path::Path,
    catalog: &std::sync::Arc<tally_catalog::Catalog>,
    hint: &str,
) -> anyhow::Result<tally_store::EmbeddedStore> {
    tally_store::EmbeddedStore::open(
        tally_store::EmbeddedStoreConfig::new(data_dir),
        std::sync::Arc::clone(catalog),
    )
    .map_err(|e| match e {
        tally_store::StoreError::Locked(_) => anyhow::anyhow!(
            "{} is in use by a running `tally serve`{hint}",
            data_dir.display()
        ),
        other => other.into(),
    })
}

pub(crate) fn open_catalog(
    data_dir: &std::path::Path,
) -> anyhow::Result<std::sync::Arc<tally_catalog::Catalog>> {
    std::fs::create_dir_all(data_dir)?;
    Ok(std::sync::Arc::new(tally_catalog::Catalog::open(
        &data_dir.join("meta.sqlite"),
    )?))
}
