//! `agentauth admin rotate-credential`: the admin credential's own care.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use agentauth_api::AdminCredentialRotation;
use clap::Subcommand;
use reqwest::Method;

use crate::admin_client::Connection;

/// `agentauth admin …`.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Replace the admin credential: the old one stops working at once (on
    /// other replicas within a second); the new one is written to the
    /// authority's <data-dir>/admin-token and printed only to a terminal.
    RotateCredential {
        #[command(flatten)]
        conn: Connection,
    },
}

pub(crate) async fn run(cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCommand::RotateCredential { conn } => {
            let rotated: AdminCredentialRotation = conn
                .admin_with(Method::POST, "/v1/admin/credential", &())
                .await?;
            if std::io::stdout().is_terminal() {
                println!(
                    "new admin credential (shown once, also in {}): {}",
                    rotated.file, rotated.admin_token
                );
            } else {
                println!(
                    "admin credential rotated; the new one is in {} (not printed: stdout is not a terminal)",
                    rotated.file
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
