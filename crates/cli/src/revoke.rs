//! `agentauth revoke agent|token|task VALUE`.

use std::process::ExitCode;

use agentauth_api::{RevocationReceipt, RevocationRequest, RevocationTarget};
use clap::ValueEnum;
use reqwest::Method;

use crate::admin_client::Connection;

/// What `revoke` can revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RevokeKind {
    /// An agent: disabled, its tokens refused everywhere.
    Agent,
    /// A token by `jti`, and every token exchanged from it.
    Token,
    /// A task by `txn`: every token that carries it.
    Task,
    /// A key by its RFC 7638 thumbprint (`jkt`): every token bound to it.
    Key,
}

pub(crate) async fn run(
    kind: RevokeKind,
    value: &str,
    conn: &Connection,
) -> anyhow::Result<ExitCode> {
    let (kind, name) = match kind {
        RevokeKind::Agent => (RevocationTarget::Agent, "agent"),
        RevokeKind::Token => (RevocationTarget::Token, "token"),
        RevokeKind::Task => (RevocationTarget::Task, "task"),
        RevokeKind::Key => (RevocationTarget::Key, "key"),
    };
    let request = RevocationRequest {
        kind,
        value: value.to_owned(),
    };
    let _: RevocationReceipt = conn
        .admin_with(Method::POST, "/v1/revocations", &request)
        .await?;
    println!("revoked {name} {value}");
    Ok(ExitCode::SUCCESS)
}
