//! `agentauth revoke agent|token|task VALUE`.

use std::process::ExitCode;

use clap::ValueEnum;
use reqwest::Method;
use serde_json::json;

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
    let kind = match kind {
        RevokeKind::Agent => "agent",
        RevokeKind::Token => "token",
        RevokeKind::Task => "task",
        RevokeKind::Key => "key",
    };
    conn.admin(
        Method::POST,
        "/v1/revocations",
        Some(&json!({ "kind": kind, "value": value })),
    )
    .await?;
    println!("revoked {kind} {value}");
    Ok(ExitCode::SUCCESS)
}
