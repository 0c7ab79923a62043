//! `tally keys`: list, create, rotate and revoke a project's API keys.

use clap::Subcommand;
use tally_catalog::KeyScope;

use super::{DataDirArg, open_catalog};

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// List a project's keys (never their secrets) as JSON.
    List {
        #[arg(long)]
        project: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Create a key: `write` (ingest), `read` (query) or `admin` (query, persons, keys).
    Create {
        #[arg(long)]
        project: String,
        #[arg(long, value_parser = parse_scope)]
        scope: KeyScope,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Replace a key by a new one of the same scope (the old one stops working).
    Rotate {
        #[arg(long)]
        project: String,
        /// The key's id (from `tally keys list`).
        id: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Revoke a key (a running server stops taking it within 5 seconds).
    Revoke {
        #[arg(long)]
        project: String,
        id: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

fn parse_scope(s: &str) -> Result<KeyScope, String> {
    KeyScope::parse(s).ok_or_else(|| format!("unknown scope `{s}`: use write, read or admin"))
}

pub(crate) fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::List { project, data } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            println!("{}", serde_json::to_string(&catalog.list_keys(&p.id)?)?);
        }
        KeysCommand::Create {
            project,
            scope,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            let (key, secret) = catalog.create_key(&p.id, scope)?;
            print_new(&key, &secret)?;
        }
        KeysCommand::Rotate { project, id, data } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            let (key, secret) = catalog
                .rotate_key(&p.id, &id)?
                .ok_or_else(|| anyhow::anyhow!("project {} has no live key `{id}`", p.name))?;
            print_new(&key, &secret)?;
        }
        KeysCommand::Revoke { project, id, data } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            anyhow::ensure!(
                catalog.revoke_key(&p.id, &id)?,
                "project {} has no live key `{id}`",
                p.name
            );
            println!("revoked {id}");
        }
    }
    Ok(())
}

/// A new key as JSON with its secret, which is shown only now.
fn print_new(key: &tally_catalog::ApiKey, secret: &str) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(key)?;
    v["key"] = serde_json::Value::String(secret.to_owned());
    println!("{v}");
    Ok(())
}
