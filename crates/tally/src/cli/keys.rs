//! `tally keys`: list, create, rotate and revoke a project's API keys, and set a key's own
//! request rate.

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
        /// Requests per second this key may make (0: no limit); the server's default for its
        /// scope when not given.
        #[arg(long, value_parser = clap::value_parser!(u32).range(..=MAX_RATE_LIMIT as i64))]
        rate_limit: Option<u32>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Set a key's own request rate: requests per second (0: no limit), or `default` for the
    /// server's default for its scope. A running server applies it within 5 seconds.
    Limit {
        #[arg(long)]
        project: String,
        id: String,
        #[arg(value_parser = parse_rate)]
        rate: Rate,
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

/// The highest request rate a key may be given (requests per second).
const MAX_RATE_LIMIT: u32 = 1_000_000;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate(Option<u32>);

fn parse_rate(s: &str) -> Result<Rate, String> {
    if s == "default" {
        return Ok(Rate(None));
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_RATE_LIMIT => Ok(Rate(Some(n))),
        _ => Err(format!(
            "`{s}` is not a rate: give requests per second (0 to {MAX_RATE_LIMIT}; 0: no limit) or `default`"
        )),
    }
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
            rate_limit,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            let (mut key, secret) = catalog.create_key(&p.id, scope)?;
            if rate_limit.is_some() {
                catalog.set_key_rate_limit(&p.id, &key.id, rate_limit)?;
                key.rate_limit = rate_limit;
            }
            print_new(&key, &secret)?;
        }
        KeysCommand::Limit {
            project,
            id,
            rate,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            anyhow::ensure!(
                catalog.set_key_rate_limit(&p.id, &id, rate.0)?,
                "project {} has no live key `{id}`",
                p.name
            );
            match rate.0 {
                Some(0) => println!("{id} has no rate limit"),
                Some(n) => println!("{id} may make {n} requests per second"),
                None => println!("{id} has the server's default rate"),
            }
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
