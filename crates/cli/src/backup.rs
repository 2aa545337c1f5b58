//! `agentauth backup --out FILE`: an online copy of the SQLite store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;

/// Flags of `agentauth backup`.
#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The file to write (created 0600; an existing file is never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// The authority's data dir, whose agentauth.db is copied.
    #[arg(long, env = "AGENTAUTH_DATA_DIR", default_value = "./agentauth-data")]
    data_dir: PathBuf,
    /// Refused when it names PostgreSQL: back that up with pg_dump.
    #[arg(long, env = "AGENTAUTH_DATABASE_URL")]
    database_url: Option<String>,
}

pub(crate) async fn run(args: BackupArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.database_url
        && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        bail!(
            "the store is PostgreSQL: back it up with pg_dump (see the README's operations section)"
        );
    }
    let database = args.data_dir.join("agentauth.db");
    let out = args.out.clone();
    let pages = tokio::task::spawn_blocking({
        let database = database.clone();
        move || agentauth_store::backup_sqlite(&database, &out)
    })
    .await
    .context("the backup task failed")??;
    println!(
        "backed up {} ({pages} pages) to {}; keep {} (or AGENTAUTH_MASTER_KEY) apart from it: \
         the signing keys and audit codes need it",
        database.display(),
        args.out.display(),
        args.data_dir.join("master.key").display()
    );
    Ok(ExitCode::SUCCESS)
}
