//! `tally retention`: set, list and clear a project's retention policies, and run them now
//! (the server also runs them every hour).

use clap::Subcommand;

use super::{DataDirArg, open_catalog, open_store};

#[derive(Debug, Subcommand)]
pub(crate) enum RetentionCommand {
    /// Keep the project's events (of `--event` only, when given) for MAX_AGE: `90d`,
    /// `12 weeks`, `13 months`, `2y`.
    Set {
        #[arg(long)]
        project: String,
        #[arg(long)]
        event: Option<String>,
        max_age: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// The project's policies as JSON.
    List {
        #[arg(long)]
        project: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove a policy.
    Clear {
        #[arg(long)]
        project: String,
        #[arg(long)]
        event: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove the expired events now (the server must be stopped) and print what was removed
    /// as JSON.
    Apply {
        #[arg(long)]
        project: String,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// The instant to apply the policies at (RFC 3339); now by default.
        #[arg(long)]
        now: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
}

pub(crate) async fn run(cmd: RetentionCommand) -> anyhow::Result<()> {
    match cmd {
        RetentionCommand::Set {
            project,
            event,
            max_age,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            catalog.set_retention(&p.id, event.as_deref(), &max_age)?;
            println!(
                "{}",
                serde_json::to_string(&catalog.retention_policies(&p.id)?)?
            );
        }
        RetentionCommand::List { project, data } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            println!(
                "{}",
                serde_json::to_string(&catalog.retention_policies(&p.id)?)?
            );
        }
        RetentionCommand::Clear {
            project,
            event,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            anyhow::ensure!(
                catalog.clear_retention(&p.id, event.as_deref())?,
                "project {} has no such retention policy",
                p.name
            );
            println!(
                "{}",
                serde_json::to_string(&catalog.retention_policies(&p.id)?)?
            );
        }
        RetentionCommand::Apply {
            project,
            dry_run,
            now,
            data,
        } => {
            let now = match now {
                Some(t) => tally_core::time::parse_rfc3339(&t)
                    .ok_or_else(|| anyhow::anyhow!("--now `{t}` is not an RFC 3339 time"))?,
                None => chrono::Utc::now(),
            };
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            let store = open_store(
                &data.data_dir,
                &catalog,
                ", which applies the policies every hour; stop it first",
            )?;
            let report =
                tally_server::retention::run_retention(&catalog, &store, &p.id, now, dry_run)
                    .await
                    .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
