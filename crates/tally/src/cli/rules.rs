//! `tally rules ...`: save, list and delete aggregation rules. Works with or without a running
//! server on the same data directory; a running server builds or drops the rollup within seconds.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use tally_query::AggregationRule;

use super::{DataDirArg, open_catalog};

#[derive(Debug, Subcommand)]
pub(crate) enum RulesCommand {
    /// Save a rule (a JSON file as `POST /v1/rules` takes; `-` reads standard input).
    Create {
        file: PathBuf,
        /// Project name or id (may be left out when there is only one project).
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List the project's saved rules.
    List {
        #[arg(long)]
        project: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Delete a saved rule (and its rollup).
    Delete {
        name: String,
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
}

pub(crate) fn run(cmd: RulesCommand) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::Create {
            file,
            project,
            data,
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let rule: AggregationRule = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid rule", file.display()))?;
            let catalog = open_catalog(&data.data_dir)?;
            let project = super::import::resolve_project(&catalog, project.as_deref())?;
            let replaced = tally_server::save_rule(&catalog, &project.id, &rule)?;
            println!(
                "{} rule `{}` in project {}",
                if replaced { "replaced" } else { "saved" },
                rule.name,
                project.name
            );
            Ok(())
        }
        RulesCommand::List {
            project,
            json,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let project = super::import::resolve_project(&catalog, project.as_deref())?;
            let rules = catalog.rules(Some(&project.id))?;
            if json {
                let list: Vec<serde_json::Value> = rules
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name,
                            "rule": serde_json::from_str::<serde_json::Value>(&r.rule_json)
                                .unwrap_or(serde_json::Value::Null),
                            "created_at": r.created_at,
                            "updated_at": r.updated_at,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "rules": list }))?
                );
                return Ok(());
            }
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            t.set_header(["name", "rule", "updated"]);
            for r in &rules {
                t.add_row([r.name.as_str(), r.rule_json.as_str(), r.updated_at.as_str()]);
            }
            println!("{t}");
            Ok(())
        }
        RulesCommand::Delete {
            name,
            project,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let project = super::import::resolve_project(&catalog, project.as_deref())?;
            if !catalog.delete_rule(&project.id, &name)? {
                anyhow::bail!("project {} has no rule named `{name}`", project.name);
            }
            println!("deleted rule `{name}` of project {}", project.name);
            Ok(())
        }
    }
}
