//! `tally project ...` and `tally schemas ...`: metadata commands. They work on the data
//! directory directly, with or without a running server (SQLite is shared safely).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use tally_core::EventSchema;

use super::{DataDirArg, open_catalog};

#[derive(Debug, Subcommand)]
pub(crate) enum ProjectCommand {
    /// Create a project and print its id and keys (the keys are shown only once).
    Create {
        name: String,
        /// Print JSON: {"id", "name", "write_key", "read_key", "admin_key"}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List projects.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Change a project's settings.
    Set {
        /// Project name or id.
        project: String,
        /// Reject events that have no registered schema.
        #[arg(long)]
        strict_schemas: Option<bool>,
        /// What happens to events sent without consent: `anonymous` (counted without ids, IP
        /// or person) or `drop`.
        #[arg(long, value_parser = clap::value_parser!(tally_core::ConsentMode))]
        consent: Option<tally_core::ConsentMode>,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SchemaCommand {
    /// Register (or replace) an event schema from a JSON file:
    /// {"event": "purchase", "fields": [{"name": "amount", "type": "float", "required": true}]}
    Put {
        #[arg(long)]
        project: String,
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List a project's schemas as JSON.
    List {
        #[arg(long)]
        project: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove the schema of an event.
    Delete {
        #[arg(long)]
        project: String,
        event: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

pub(crate) fn run_project(cmd: ProjectCommand) -> anyhow::Result<()> {
    match cmd {
        ProjectCommand::Create { name, json, data } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.create_project(&name)?;
            if json {
                println!("{}", serde_json::to_string(&p)?);
            } else {
                println!("project    {} ({})", p.name, p.id);
                println!("write key  {}   (ingest only)", p.write_key);
                println!("read key   {}   (query only)", p.read_key);
                println!(
                    "admin key  {}   (query, persons' erasure and export)",
                    p.admin_key
                );
                println!("The keys are shown only now; keep them somewhere safe.");
            }
        }
        ProjectCommand::List { json, data } => {
            let catalog = open_catalog(&data.data_dir)?;
            let projects = catalog.list_projects()?;
            if json {
                println!("{}", serde_json::to_string(&projects)?);
            } else {
                for p in projects {
                    println!("{}\t{}\tstrict_schemas={}", p.id, p.name, p.strict_schemas);
                }
            }
        }
        ProjectCommand::Set {
            project,
            strict_schemas,
            consent,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            if let Some(strict) = strict_schemas {
                catalog.set_strict_schemas(&p.id, strict)?;
            }
            if let Some(mode) = consent {
                catalog.set_consent(&p.id, mode)?;
            }
            println!(
                "{}",
                serde_json::to_string(&catalog.find_project(p.id.as_str())?)?
            );
        }
    }
    Ok(())
}

pub(crate) fn run_schemas(cmd: SchemaCommand) -> anyhow::Result<()> {
    match cmd {
        SchemaCommand::Put {
            project,
            file,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let schema: EventSchema = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid event schema", file.display()))?;
            anyhow::ensure!(
                !schema.event.is_empty(),
                "the schema's `event` must not be empty"
            );
            catalog.put_schema(&p.id, &schema)?;
            println!("schema of `{}` registered for {}", schema.event, p.name);
        }
        SchemaCommand::List { project, data } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&catalog.schemas(&p.id)?)?
            );
        }
        SchemaCommand::Delete {
            project,
            event,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            anyhow::ensure!(
                catalog.delete_schema(&p.id, &event)?,
                "`{event}` has no schema in {}",
                p.name
            );
            println!("schema of `{event}` removed");
        }
    }
    Ok(())
}
