//! `tally query`: runs the body of a `POST /v1/query` from a file against the data directory
//! (read-only: it works beside a running server and sees every acknowledged event).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use comfy_table::Table;
use tally_query::{Aggregator, QueryRequest};
use tally_store::{EmbeddedStore, EmbeddedStoreConfig};

use super::{DataDirArg, open_catalog};

#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    /// A JSON file: {"time_range": {...}, "rules": [...]} as `POST /v1/query` takes.
    #[arg(long)]
    rules: PathBuf,
    /// Project name or id (may be left out when there is only one project).
    #[arg(long)]
    project: Option<String>,
    /// Print the JSON answer instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    data: DataDirArg,
}

pub(crate) async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.rules)
        .with_context(|| format!("reading {}", args.rules.display()))?;
    let request: QueryRequest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid query", args.rules.display()))?;
    let catalog = open_catalog(&args.data.data_dir)?;
    let project = super::import::resolve_project(&catalog, args.project.as_deref())?;
    let store =
        EmbeddedStore::open_read_only(EmbeddedStoreConfig::new(&args.data.data_dir), catalog)?;
    let response = Aggregator::new(Arc::new(store))
        .run(&project.id, &request)
        .await
        .map_err(|e| match e {
            tally_query::QueryError::Invalid(f) => {
                anyhow::anyhow!("{}: {} ({})", f.field, f.message, f.code)
            }
            other => other.into(),
        })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
        return Ok(());
    }
    for (name, table) in &response.results {
        println!("{name}");
        let mut t = Table::new();
        t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
        t.set_header(&table.columns);
        for row in &table.rows {
            t.add_row(row.iter().map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "∅".to_owned(),
                other => other.to_string(),
            }));
        }
        println!("{t}\n");
    }
    Ok(())
}
