//! `agentauth keys …`: the authority's signing keys, listed and rotated.

use std::process::ExitCode;

use agentauth_api::{KeyRotation, SigningKeyList, SigningKeyView};
use clap::Subcommand;
use reqwest::Method;

use crate::admin_client::Connection;

/// `agentauth keys …`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Add a signing key. It is in the JWKS at once and signs after the
    /// publish lead (--signing-key-publish-lead-secs of `serve`), so
    /// verifiers learn it first; the key it replaces stays published until
    /// every token it signed has expired.
    Rotate {
        /// Sign with the new key at once (for a key believed compromised):
        /// verifiers meet a key they have not fetched yet.
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the signing keys: which signs, which are published ahead or
    /// still published after retirement, and when each changes.
    List {
        #[command(flatten)]
        conn: Connection,
    },
}

pub(crate) async fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Rotate { now, conn } => {
            let key: SigningKeyView = conn
                .admin_with(Method::POST, "/v1/keys/rotate", &KeyRotation { now })
                .await?;
            println!(
                "added signing key {} ({}), {}",
                key.kid,
                key.alg,
                if key.phase == "signing" {
                    "signing now".to_owned()
                } else {
                    format!("published now, signing from {}", key.signs_from)
                }
            );
        }
        KeysCommand::List { conn } => {
            let list: SigningKeyList = conn.admin(Method::GET, "/v1/keys").await?;
            for k in &list.keys {
                println!("{}", line(k));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One key per line: kid, algorithm, phase, and its times (seconds since
/// the epoch).
fn line(k: &SigningKeyView) -> String {
    let mut out = format!(
        "{}  {}  {:<9}  created {}  signs from {}",
        k.kid, k.alg, k.phase, k.created_at, k.signs_from
    );
    if let Some(at) = k.retired_at {
        out.push_str(&format!("  retired {at}"));
    }
    if let Some(until) = k.published_until {
        out.push_str(&format!("  published until {until}"));
    }
    out
}
