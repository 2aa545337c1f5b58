//! `agentauth master-key rotate`: a new master key, with the signing keys
//! and the audit root re-sealed under it (run with every authority stopped).

use std::path::PathBuf;
use std::process::ExitCode;

use agentauth_authority::{MASTER_KEY_ENV, MasterKeyRotated, rotate_master_key};
use clap::{Args, Subcommand};

use crate::audit::StoreArgs;

/// `agentauth master-key …`.
#[derive(Debug, Subcommand)]
pub(crate) enum MasterKeyCommand {
    /// Replace the master key: every signing key and the audit root are
    /// re-sealed under a new key in one transaction (audit records and
    /// checkpoints still verify). Stop every authority on the store first,
    /// and start them again with the new key.
    Rotate(RotateArgs),
}

/// Flags of `master-key rotate`.
#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// Where to write the new key (created 0600) when the current one comes
    /// from AGENTAUTH_MASTER_KEY; without that variable the new key replaces
    /// <data-dir>/master.key in place.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) async fn run(cmd: MasterKeyCommand) -> anyhow::Result<ExitCode> {
    let MasterKeyCommand::Rotate(args) = cmd;
    let store = args.store.open().await?;
    let from_env = std::env::var(MASTER_KEY_ENV).ok();
    let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let done = rotate_master_key(
        &*store,
        &args.store.data_dir,
        from_env.as_deref(),
        args.out.as_deref(),
        &format!("cli:{operator}"),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
    match done {
        MasterKeyRotated::Rotated { signing_keys, path } if from_env.is_some() => println!(
            "master key rotated: {signing_keys} signing keys re-sealed; the new key is in {} \
             (put it in {MASTER_KEY_ENV} for every authority, then delete the file)",
            path.display()
        ),
        MasterKeyRotated::Rotated { signing_keys, path } => println!(
            "master key rotated: {signing_keys} signing keys re-sealed; {} holds the new key \
             (copy it to every replica before starting them)",
            path.display()
        ),
        MasterKeyRotated::Finished { path } => println!(
            "an interrupted rotation was finished: {} holds the key the store is sealed under",
            path.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}
