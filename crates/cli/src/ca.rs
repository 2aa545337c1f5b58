//! `agentauth ca …`: the certificate authorities of X.509-SVIDs, listed and
//! rotated.

use std::process::ExitCode;

use agentauth_api::{CaList, CaRotation, CaView};
use clap::Subcommand;
use reqwest::Method;

use crate::admin_client::Connection;

/// `agentauth ca …`.
#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Add a CA. It is in the trust bundle at once and signs SVIDs twice the
    /// bundle's refresh hint later (600 s by default), so peers learn it first; the CAs before it stay in the bundle
    /// until they expire, so the SVIDs they signed keep validating.
    Rotate {
        /// Sign with the new CA at once (for a CA key believed compromised).
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the CAs in the bundle: which signs, which is published ahead,
    /// which are retired, and when each expires.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Take a CA out of the trust bundle at once (its key believed
    /// compromised): what it signed stops validating wherever the bundle is
    /// fetched again. Not the CA signing now: `rotate --now` first.
    Remove {
        /// The CA's serial number, as `ca list` shows it.
        serial: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub(crate) async fn run(cmd: CaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCommand::Rotate { now, conn } => {
            let ca: CaView = conn
                .admin_with(Method::POST, "/v1/ca/rotate", &CaRotation { now })
                .await?;
            println!(
                "added CA {}, {}, until {}",
                ca.serial,
                if ca.phase == "signing" {
                    "signing now".to_owned()
                } else {
                    format!("in the bundle now, signing from {}", ca.signs_from)
                },
                ca.not_after
            );
        }
        CaCommand::Remove { serial, conn } => {
            let _: serde_json::Value = conn
                .admin(Method::DELETE, &format!("/v1/ca/{serial}"))
                .await?;
            println!("CA {serial} is out of the trust bundle");
        }
        CaCommand::List { conn } => {
            let list: CaList = conn.admin(Method::GET, "/v1/ca").await?;
            for ca in &list.cas {
                println!(
                    "{}  {:<9}  signs from {}  until {}",
                    ca.serial, ca.phase, ca.signs_from, ca.not_after
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
