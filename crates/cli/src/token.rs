//! `agentauth token …`: get a token as an agent, inspect one.

use std::path::PathBuf;
use std::process::ExitCode;

use agentauth_api::Jwks;
use agentauth_core::{
    AgentName, DEFAULT_LEEWAY_SECS, PublicJwk, Scope, SpiffeId, TokenExpectations, TrustDomain,
    b64url_decode, parse_access_token, unix_now, verify_access_token,
};
use agentauth_sdk::{Client, Metadata};
use anyhow::{Context as _, anyhow};
use clap::Subcommand;
use serde_json::Value;

use crate::admin_client::Connection;
use crate::agent::read_key;

/// Token commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Get an access token as an agent (client_credentials + private_key_jwt).
    Get {
        /// The agent's private key file.
        #[arg(long)]
        key: PathBuf,
        /// The agent's name (or SPIFFE ID).
        #[arg(long)]
        agent: String,
        /// The target agent's name (or SPIFFE ID).
        #[arg(long)]
        audience: String,
        /// Space-separated permissions.
        #[arg(long)]
        scope: String,
        /// Requested lifetime in seconds (capped by the authority).
        #[arg(long)]
        expires_in: Option<i64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Decode a token and verify it against the authority's keys.
    Inspect {
        /// The access token.
        jwt: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub(crate) async fn run(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Get {
            key,
            agent,
            audience,
            scope,
            expires_in,
            conn,
        } => {
            let key = read_key(&key)?;
            let metadata = Metadata::fetch(&reqwest::Client::new(), &conn.authority).await?;
            let domain = TrustDomain::new(&metadata.trust_domain)?;
            let client = Client::new(&conn.authority, agent_id(&domain, &agent)?, key);
            let token = client
                .fetch_token(
                    &agent_id(&domain, &audience)?,
                    &Scope::parse(&scope)?,
                    expires_in,
                )
                .await?;
            println!("{}", token.token);
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Inspect { jwt, conn } => inspect(&jwt, &conn).await,
    }
}

/// A name or a full SPIFFE ID, as a SPIFFE ID.
fn agent_id(domain: &TrustDomain, given: &str) -> anyhow::Result<SpiffeId> {
    if given.starts_with("spiffe://") {
        return Ok(SpiffeId::parse(given)?);
    }
    Ok(SpiffeId::agent(domain, &AgentName::new(given)?))
}

async fn inspect(jwt: &str, conn: &Connection) -> anyhow::Result<ExitCode> {
    let jwt = jwt.trim();
    let compact =
        parse_access_token(jwt).map_err(|e| anyhow!("not an agentauth access token: {e}"))?;
    let payload = jwt
        .split('.')
        .nth(1)
        .and_then(b64url_decode)
        .ok_or_else(|| anyhow!("unreadable payload"))?;
    let claims: Value = serde_json::from_slice(&payload).context("the payload is not JSON")?;
    println!("header: {}", serde_json::to_string(&compact.header)?);
    println!("claims: {}", serde_json::to_string_pretty(&claims)?);

    let http = reqwest::Client::new();
    let metadata = Metadata::fetch(&http, &conn.authority).await?;
    let jwks: Jwks = http.get(&metadata.jwks_uri).send().await?.json().await?;
    let kid = compact.header.kid.as_deref().unwrap_or("");
    let key = jwks
        .keys
        .iter()
        .find(|k| k.kid.as_deref() == Some(kid))
        .ok_or_else(|| {
            anyhow!(
                "INVALID: the signing key \"{kid}\" is not published by {}",
                conn.authority
            )
        })?;
    // The whole published key, so its `alg` is checked against the key too.
    let key = PublicJwk::from_json(&serde_json::to_value(key)?)?;
    let expect = TokenExpectations {
        issuer: &metadata.issuer,
        audience: None,
        now: unix_now(),
        leeway: DEFAULT_LEEWAY_SECS,
    };
    match verify_access_token(&compact, &key, &expect) {
        Ok(c) => {
            println!(
                "signature: valid (key {kid}), issuer: {}, expires in {} s",
                c.iss,
                c.exp - unix_now()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
