//! `tally dashboards ...`: save, list, show and delete dashboards, and manage their read-only
//! share links. Works on the data directory, beside a running server (which reads dashboards
//! from the catalog on every request).

use std::path::PathBuf;

use clap::Subcommand;
use comfy_table::Table;
use tally_viz::{DashboardError, Dashboards};

use super::reports::{ProjectArg, read_body};

#[derive(Debug, Subcommand)]
pub(crate) enum DashboardsCommand {
    /// Save a dashboard (a JSON file as `POST /v1/dashboards` takes; `-` reads standard input).
    Create {
        file: PathBuf,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Replace a dashboard's definition.
    Update {
        id: String,
        file: PathBuf,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// List the project's dashboards.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Print a dashboard's definition as JSON.
    Show {
        id: String,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Delete a dashboard and its share links.
    Delete {
        id: String,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Create a read-only share link; prints its path (`/share/TOKEN`) once.
    Share {
        id: String,
        /// Print the new link as JSON (with its id, for `revoke`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// List a dashboard's share links (never their tokens).
    Shares {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Revoke a share link: it stops working at once.
    Revoke {
        id: String,
        share_id: String,
        #[command(flatten)]
        project: ProjectArg,
    },
}

/// Dashboard errors as a user reads them: the field, then the problem.
fn user_error(e: DashboardError) -> anyhow::Error {
    match e {
        DashboardError::Invalid(f) if f.field.is_empty() => {
            anyhow::anyhow!("{} ({})", f.message, f.code)
        }
        DashboardError::Invalid(f) => anyhow::anyhow!("{}: {} ({})", f.field, f.message, f.code),
        other => other.into(),
    }
}

pub(crate) fn run(cmd: DashboardsCommand) -> anyhow::Result<()> {
    let open = ProjectArg::open;
    match cmd {
        DashboardsCommand::Create { file, project } => {
            let body = read_body(&file)?;
            let (catalog, p) = open(&project)?;
            let saved = Dashboards::new(&catalog)
                .create(&p.id, body)
                .map_err(user_error)?;
            println!("{}", saved.id);
            eprintln!(
                "saved dashboard {} ({} widgets) in project {}",
                saved.id,
                saved.definition.widgets.len(),
                p.name
            );
        }
        DashboardsCommand::Update { id, file, project } => {
            let body = read_body(&file)?;
            let (catalog, p) = open(&project)?;
            Dashboards::new(&catalog)
                .update(&p.id, &id, body)
                .map_err(user_error)?;
            println!("updated dashboard {id}");
        }
        DashboardsCommand::List { json, project } => {
            let (catalog, p) = open(&project)?;
            let all = Dashboards::new(&catalog).list(&p.id).map_err(user_error)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.set_header(["id", "name", "widgets", "range", "updated"]);
            for d in &all {
                t.add_row([
                    d.id.clone(),
                    d.definition.name.clone(),
                    d.definition.widgets.len().to_string(),
                    d.definition.time_range.to_string(),
                    d.updated_at.clone(),
                ]);
            }
            println!("{t}");
        }
        DashboardsCommand::Show { id, project } => {
            let (catalog, p) = open(&project)?;
            let d = Dashboards::new(&catalog)
                .get(&p.id, &id)
                .map_err(user_error)?;
            println!("{}", serde_json::to_string_pretty(&d)?);
        }
        DashboardsCommand::Delete { id, project } => {
            let (catalog, p) = open(&project)?;
            if !Dashboards::new(&catalog)
                .delete(&p.id, &id)
                .map_err(user_error)?
            {
                anyhow::bail!("dashboard `{id}` not found");
            }
            println!("deleted dashboard {id}");
        }
        DashboardsCommand::Share { id, json, project } => {
            let (catalog, p) = open(&project)?;
            let s = Dashboards::new(&catalog)
                .share(&p.id, &id)
                .map_err(user_error)?;
            let path = format!("/share/{}", s.token);
            if json {
                let mut v = serde_json::to_value(&s)?;
                v["path"] = serde_json::Value::String(path);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{path}");
                eprintln!(
                    "share link {} for dashboard {id}: open it on the server's address; \
                     it is shown only now (revoke with `tally dashboards revoke {id} {}`)",
                    s.share.id, s.share.id
                );
            }
        }
        DashboardsCommand::Shares { id, json, project } => {
            let (catalog, p) = open(&project)?;
            let shares = Dashboards::new(&catalog)
                .shares(&p.id, &id)
                .map_err(user_error)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&shares)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.set_header(["id", "token starts", "created", "revoked"]);
            for s in &shares {
                t.add_row([
                    s.id.clone(),
                    format!("{}…", s.prefix),
                    s.created_at.clone(),
                    s.revoked_at.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{t}");
        }
        DashboardsCommand::Revoke {
            id,
            share_id,
            project,
        } => {
            let (catalog, p) = open(&project)?;
            if !Dashboards::new(&catalog)
                .revoke(&p.id, &id, &share_id)
                .map_err(user_error)?
            {
                anyhow::bail!("dashboard `{id}` has no share link `{share_id}`");
            }
            println!("revoked share link {share_id}");
        }
    }
    Ok(())
}
