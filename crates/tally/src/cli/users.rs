//! `tally users`: web UI accounts and their roles per project. Passwords come from stdin
//! (`--password-stdin`, the first line) or the `TALLY_PASSWORD` environment variable, never
//! from an argument (which other users of the machine could read in the process list).

use std::io::BufRead;

use clap::Subcommand;
use tally_catalog::Role;

use super::{DataDirArg, open_catalog};

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Create a user; with `--project`, also give it `--role` there (owner by default): the
    /// first owner of a project.
    Create {
        email: String,
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value = "owner")]
        role: String,
        /// Read the password from the first line of stdin (else from TALLY_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Set a user's password (ends the user's sessions).
    Passwd {
        email: String,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Give a user a role (viewer, admin, owner) in a project.
    Grant {
        email: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        role: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Take a user's role in a project away.
    Revoke {
        email: String,
        #[arg(long)]
        project: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Every user with its roles, as JSON.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Delete a user with its roles and sessions.
    Delete {
        email: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

fn password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let p = line.trim_end_matches(['\n', '\r']).to_owned();
        anyhow::ensure!(!p.is_empty(), "no password on stdin");
        return Ok(p);
    }
    std::env::var("TALLY_PASSWORD").map_err(|_| {
        anyhow::anyhow!("give the password on stdin with --password-stdin, or in TALLY_PASSWORD")
    })
}

fn role(name: &str) -> anyhow::Result<Role> {
    Role::parse(name)
        .ok_or_else(|| anyhow::anyhow!("unknown role `{name}`: use viewer, admin or owner"))
}

pub(crate) fn run(cmd: UsersCommand) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::Create {
            email,
            project,
            role: role_name,
            password_stdin,
            data,
        } => {
            let r = role(&role_name)?;
            let pw = password(password_stdin)?;
            let catalog = open_catalog(&data.data_dir)?;
            let p = project.map(|p| catalog.find_project(&p)).transpose()?;
            let user = catalog.create_user(&email, &pw)?;
            if let Some(p) = &p {
                catalog.set_role(&user.email, &p.id, r)?;
            }
            println!(
                "{}",
                serde_json::json!({"id": user.id, "email": user.email,
                    "projects": catalog.memberships(&user.id)?})
            );
        }
        UsersCommand::Passwd {
            email,
            password_stdin,
            data,
        } => {
            let pw = password(password_stdin)?;
            open_catalog(&data.data_dir)?.set_password(&email, &pw)?;
            println!("password changed; the user's sessions ended");
        }
        UsersCommand::Grant {
            email,
            project,
            role: role_name,
            data,
        } => {
            let r = role(&role_name)?;
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            catalog.set_role(&email, &p.id, r)?;
            println!("{email} is {} of {}", r.as_str(), p.name);
        }
        UsersCommand::Revoke {
            email,
            project,
            data,
        } => {
            let catalog = open_catalog(&data.data_dir)?;
            let p = catalog.find_project(&project)?;
            anyhow::ensure!(
                catalog.remove_role(&email, &p.id)?,
                "{email} has no role in {}",
                p.name
            );
            println!("{email} has no role in {} any more", p.name);
        }
        UsersCommand::List { data } => {
            let catalog = open_catalog(&data.data_dir)?;
            let mut out = Vec::new();
            for u in catalog.users()? {
                out.push(serde_json::json!({"id": u.id, "email": u.email,
                    "created_at": u.created_at, "projects": catalog.memberships(&u.id)?}));
            }
            println!("{}", serde_json::Value::Array(out));
        }
        UsersCommand::Delete { email, data } => {
            let catalog = open_catalog(&data.data_dir)?;
            anyhow::ensure!(catalog.delete_user(&email)?, "no user `{email}`");
            println!("deleted {email}");
        }
    }
    Ok(())
}
