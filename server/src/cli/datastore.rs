//! `signet-server datastore migrate --from sqlite://OLD --to postgres://NEW`:
//! moves a single-server install to PostgreSQL (stop the server first; start
//! it again with `--datastore postgres://NEW` on the same data dir, which
//! keeps its CA keys and server id).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{print_json, Output, OutputArgs};
use crate::config::FileConfig;
use crate::datastore::{DatastoreUrl, PostgresSettings};

#[derive(Debug, Subcommand)]
pub enum DatastoreCommand {
    /// Copies everything of a SQLite datastore into an empty PostgreSQL one.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The SQLite datastore: sqlite://PATH (the data dir's datastore.sqlite3).
    #[arg(long)]
    from: String,
    /// The PostgreSQL database: postgres://USER@HOST[:PORT]/DB, empty.
    #[arg(long)]
    to: String,
    /// A file holding the PostgreSQL password (else [datastore]
    /// password_file of --config, or PGPASSWORD / ~/.pgpass).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The server's config file, for its [datastore] settings (sslmode,
    /// sslrootcert, password_file, timeouts).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

impl DatastoreCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let DatastoreCommand::Migrate(a) = self;
        let from: DatastoreUrl = a.from.parse()?;
        let to: DatastoreUrl = a.to.parse()?;
        let mut settings = match &a.config {
            Some(path) => {
                let file = FileConfig::load(path)?;
                crate::RuntimeConfig::try_from(file)?.postgres
            }
            None => PostgresSettings::default(),
        };
        if a.password_file.is_some() {
            settings.password_file = a.password_file;
        }
        let done = crate::datastore::migrate::run(&from, &to, &settings).await?;
        match a.output.output {
            Output::Json => print_json(&json!({
                "from": from.to_string(),
                "to": to.to_string(),
                "rows": done.rows,
                "revision": done.revision,
            }))?,
            Output::Text => {
                println!("Migrated {from} to {to}");
                for (table, n) in &done.rows {
                    println!("{table:<20}: {n}");
                }
                println!("{:<20}: {}", "revision", done.revision);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
