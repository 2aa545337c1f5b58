//! `agentauth agent …`: register and manage agents.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agentauth_core::{AgentName, SigningKey};
use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_client::Connection;

/// Key types an agent can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KeyType {
    /// Ed25519 (EdDSA), the default.
    Ed25519,
    /// NIST P-256 (ES256).
    P256,
}

/// Agent registry commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Generate a key pair locally and register the agent with its public key.
    Register {
        /// Agent name, [a-z0-9][a-z0-9-]{0,62}.
        name: String,
        /// A permission the agent may hold (repeatable).
        #[arg(long = "permission", short = 'p')]
        permissions: Vec<String>,
        /// Where to write the private key (mode 0600) [default: ./NAME.key.json].
        #[arg(long)]
        key_out: Option<PathBuf>,
        /// What the agent does.
        #[arg(long, default_value = "")]
        description: String,
        /// Who is responsible for it.
        #[arg(long, default_value = "")]
        owner: String,
        /// Key type to generate.
        #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
        key_type: KeyType,
        #[command(flatten)]
        conn: Connection,
    },
    /// List agents.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one agent.
    Show {
        /// Agent name.
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Disable an agent: no new tokens, existing ones refused by verifiers.
    Disable {
        /// Agent name.
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Enable a disabled agent.
    Enable {
        /// Agent name.
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Let NAME delegate permissions it holds to another agent by token exchange.
    Delegate {
        /// The delegating agent.
        name: String,
        /// The agent it may delegate to.
        #[arg(long)]
        to: String,
        /// A permission it may delegate (repeatable).
        #[arg(long = "permission", short = 'p', required = true)]
        permissions: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete an agent and revoke its tokens.
    Delete {
        /// Agent name.
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub(crate) async fn run(cmd: AgentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AgentCommand::Register {
            name,
            permissions,
            key_out,
            description,
            owner,
            key_type,
            conn,
        } => {
            let key = match key_type {
                KeyType::Ed25519 => SigningKey::generate_ed25519(),
                KeyType::P256 => SigningKey::generate_p256(),
            };
            let registration = Registration {
                name: &name,
                permissions,
                description,
                owner,
            };
            register(&conn, registration, key, key_out).await?;
        }
        AgentCommand::List { conn } => {
            let list = conn.admin(Method::GET, "/v1/agents", None).await?;
            for agent in list["agents"].as_array().into_iter().flatten() {
                println!("{}", summary(agent));
            }
        }
        AgentCommand::Show { name, conn } => {
            let agent = conn
                .admin(
                    Method::GET,
                    &format!("/v1/agents/{}", checked(&name)?),
                    None,
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&agent)?);
        }
        AgentCommand::Disable { name, conn } => set_status(&conn, &name, "disabled").await?,
        AgentCommand::Enable { name, conn } => set_status(&conn, &name, "active").await?,
        AgentCommand::Delegate {
            name,
            to,
            permissions,
            conn,
        } => {
            let path = format!("/v1/agents/{}/delegations", checked(&name)?);
            let body = json!({ "to": to, "permissions": permissions });
            let grant = conn.admin(Method::POST, &path, Some(&body)).await?;
            println!(
                "{} may delegate {} to {}",
                grant["from"].as_str().unwrap_or(""),
                grant["permissions"].as_array().map_or(String::new(), |p| p
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")),
                grant["to"].as_str().unwrap_or("")
            );
        }
        AgentCommand::Delete { name, conn } => {
            conn.admin(
                Method::DELETE,
                &format!("/v1/agents/{}", checked(&name)?),
                None,
            )
            .await?;
            println!("deleted {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn checked(name: &str) -> anyhow::Result<AgentName> {
    Ok(AgentName::new(name)?)
}

fn summary(agent: &Value) -> String {
    let permissions: Vec<&str> = agent["permissions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{:<24} {:<9} {:<48} {}",
        agent["name"].as_str().unwrap_or(""),
        agent["status"].as_str().unwrap_or(""),
        agent["id"].as_str().unwrap_or(""),
        permissions.join(" ")
    )
}

async fn set_status(conn: &Connection, name: &str, status: &str) -> anyhow::Result<()> {
    let path = format!("/v1/agents/{}", checked(name)?);
    let agent = conn
        .admin(Method::PATCH, &path, Some(&json!({ "status": status })))
        .await?;
    println!("{}", summary(&agent));
    Ok(())
}

/// What `agent register` sends besides the key.
struct Registration<'a> {
    name: &'a str,
    permissions: Vec<String>,
    description: String,
    owner: String,
}

async fn register(
    conn: &Connection,
    r: Registration<'_>,
    key: SigningKey,
    key_out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let name = r.name;
    checked(name)?;
    let key_path = key_out.unwrap_or_else(|| PathBuf::from(format!("{name}.key.json")));
    write_key(&key_path, &key)?;
    let body = json!({
        "name": name,
        "description": r.description,
        "owner": r.owner,
        "permissions": r.permissions,
        "public_jwk": key.public_jwk().to_json(),
    });
    match conn.admin(Method::POST, "/v1/agents", Some(&body)).await {
        Ok(agent) => {
            println!(
                "registered {} ({})",
                name,
                agent["id"].as_str().unwrap_or("")
            );
            println!(
                "private key written to {} (keep it secret; it never leaves this machine)",
                key_path.display()
            );
            Ok(())
        }
        Err(e) => {
            // The key belongs to nothing now; do not leave it lying around.
            let _ = std::fs::remove_file(&key_path);
            Err(e)
        }
    }
}

/// Writes the private JWK to a new 0600 file; refuses to overwrite a key.
fn write_key(path: &Path, key: &SigningKey) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create the key file {} (it must not exist yet)",
                path.display()
            )
        })?;
    file.write_all(serde_json::to_string_pretty(&key.to_private_jwk())?.as_bytes())?;
    Ok(())
}

/// Reads a private key file written by `agent register`.
pub(crate) fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(SigningKey::from_private_jwk(&value)?)
}
