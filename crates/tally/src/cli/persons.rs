//! `tally persons erase` (the right to erasure, offline) and `tally audit list`.

use clap::Subcommand;

use super::{DataDirArg, open_catalog, open_store};

#[derive(Debug, Subcommand)]
pub(crate) enum PersonsCommand {
    /// Erase the person ID belongs to, with every id linked to it: its events (buffer, WAL,
    /// Parquet files, rollups), its properties and merged ids, and its ids in stored report
    /// outputs. The server must be stopped (with it running, use `DELETE /v1/persons/{id}`).
    /// Prints the counts as JSON; the audit log records them.
    Erase {
        #[arg(long)]
        project: String,
        id: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// The project's audit log (erasures: who, when, how many events), newest first, as JSON.
    List {
        #[arg(long)]
        project: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        data: DataDirArg,
    },
}

pub(crate) async fn run_persons(cmd: PersonsCommand) -> anyhow::Result<()> {
    match cmd {
        PersonsCommand::Erase { project, id, data } => {
            anyhow::ensure!(!id.trim().is_empty(), "the person id must not be empty");
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            let store = open_store(
                &data.data_dir,
                &catalog,
                "; erase through it with `DELETE /v1/persons/{id}` and an admin key",
            )?;
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let erasure = store
                .erase_person(&p.id, &id, &format!("cli {user}"))
                .await?;
            // No server is running, so no query can still be reading the replaced files.
            store.purge_replaced_files(std::time::Duration::ZERO)?;
            println!("{}", serde_json::to_value(&erasure)?);
        }
    }
    Ok(())
}

pub(crate) fn run_audit(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::List {
            project,
            limit,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            println!(
                "{}",
                serde_json::to_string(&catalog.audit_log(&p.id, limit)?)?
            );
        }
    }
    Ok(())
}
