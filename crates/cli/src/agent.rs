//! `agentauth agent …`: register and manage agents.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agentauth_api::{
    AgentKeyRotation, AgentList, AgentPatch, AgentStatus, AgentView, Delegation, NewAgent,
    NewDelegation,
};
use agentauth_core::{AgentName, SigningKey};
use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use crate::admin_client::Connection;

/// Key types an agent can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KeyType {
    /// Ed25519 (EdDSA), the default.
    Ed25519,
    /// NIST P-256 (ES256).
    P256,
}

impl KeyType {
    /// A fresh key pair of this type.
    fn generate(self) -> SigningKey {
        match self {
            Self::Ed25519 => SigningKey::generate_ed25519(),
            Self::P256 => SigningKey::generate_p256(),
        }
    }
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
        /// A Workload API selector a local process must have to get this
        /// agent's SVIDs from the socket (repeatable; all must match):
        /// unix:uid:N, unix:gid:N, unix:path:/ABS/PATH, unix:sha256:HEX, or node:NAME (served by that node).
        #[arg(long = "selector")]
        selectors: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Replace the agent's Workload API selectors; with none, withdraw its
    /// entry (no local process gets its SVIDs from the socket).
    Selectors {
        /// Agent name.
        name: String,
        /// A selector (repeatable; all must match), as for `register`.
        #[arg(long = "selector")]
        selectors: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Generate a new key pair locally and make it the agent's key; the old
    /// key still authenticates the agent for the grace period, and tokens
    /// bound to it work until they expire (unless it is revoked).
    RotateKey {
        /// Agent name.
        name: String,
        /// Where to write the new private key (mode 0600, never over a file)
        /// [default: ./NAME.<unix time>.key.json].
        #[arg(long)]
        key_out: Option<PathBuf>,
        /// Seconds the old key keeps authenticating the agent (0 to 86400).
        #[arg(long, default_value_t = 600)]
        grace_secs: i64,
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
            selectors,
            conn,
        } => {
            let key = key_type.generate();
            let registration = Registration {
                name: &name,
                permissions,
                description,
                owner,
                selectors,
            };
            register(&conn, registration, key, key_out).await?;
        }
        AgentCommand::RotateKey {
            name,
            key_out,
            grace_secs,
            key_type,
            conn,
        } => {
            let key = key_type.generate();
            rotate_key(&conn, &name, key, key_out, grace_secs).await?;
        }
        AgentCommand::Selectors {
            name,
            selectors,
            conn,
        } => {
            let path = format!("/v1/agents/{}", checked(&name)?);
            let patch = AgentPatch {
                selectors: Some(selectors),
                ..AgentPatch::default()
            };
            let agent: AgentView = conn.admin_with(Method::PATCH, &path, &patch).await?;
            if agent.selectors.is_empty() {
                println!("{}: no Workload API entry", agent.name);
            } else {
                println!("{}: {}", agent.name, agent.selectors.join(" "));
            }
        }
        AgentCommand::List { conn } => {
            let list: AgentList = conn.admin(Method::GET, "/v1/agents").await?;
            for agent in &list.agents {
                println!("{}", summary(agent));
            }
        }
        AgentCommand::Show { name, conn } => {
            let agent: AgentView = conn
                .admin(Method::GET, &format!("/v1/agents/{}", checked(&name)?))
                .await?;
            println!("{}", serde_json::to_string_pretty(&agent)?);
        }
        AgentCommand::Disable { name, conn } => {
            set_status(&conn, &name, AgentStatus::Disabled).await?;
        }
        AgentCommand::Enable { name, conn } => {
            set_status(&conn, &name, AgentStatus::Active).await?
        }
        AgentCommand::Delegate {
            name,
            to,
            permissions,
            conn,
        } => {
            let path = format!("/v1/agents/{}/delegations", checked(&name)?);
            let body = NewDelegation { to, permissions };
            let grant: Delegation = conn.admin_with(Method::POST, &path, &body).await?;
            println!(
                "{} may delegate {} to {}",
                grant.from,
                grant.permissions.join(" "),
                grant.to
            );
        }
        AgentCommand::Delete { name, conn } => {
            conn.admin::<()>(Method::DELETE, &format!("/v1/agents/{}", checked(&name)?))
                .await?;
            println!("deleted {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn checked(name: &str) -> anyhow::Result<AgentName> {
    Ok(AgentName::new(name)?)
}

fn summary(agent: &AgentView) -> String {
    format!(
        "{:<24} {:<9} {:<48} {}",
        agent.name,
        agent.status.as_str(),
        agent.id,
        agent.permissions.join(" ")
    )
}

async fn set_status(conn: &Connection, name: &str, status: AgentStatus) -> anyhow::Result<()> {
    let path = format!("/v1/agents/{}", checked(name)?);
    let patch = AgentPatch {
        status: Some(status),
        ..AgentPatch::default()
    };
    let agent: AgentView = conn.admin_with(Method::PATCH, &path, &patch).await?;
    println!("{}", summary(&agent));
    Ok(())
}

/// What `agent register` sends besides the key.
struct Registration<'a> {
    name: &'a str,
    permissions: Vec<String>,
    description: String,
    owner: String,
    selectors: Vec<String>,
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
    let body = NewAgent {
        name: name.to_owned(),
        description: r.description,
        owner: r.owner,
        permissions: r.permissions,
        public_jwk: key.public_jwk().to_json(),
        bearer_allowed: false,
        expires_in: None,
        tags: vec![],
        selectors: r.selectors,
    };
    let registered: anyhow::Result<AgentView> =
        conn.admin_with(Method::POST, "/v1/agents", &body).await;
    match registered {
        Ok(agent) => {
            println!("registered {} ({})", name, agent.id);
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

/// Sends the new public key; the private one is written first and removed
/// again if the authority refuses.
async fn rotate_key(
    conn: &Connection,
    name: &str,
    key: SigningKey,
    key_out: Option<PathBuf>,
    grace_secs: i64,
) -> anyhow::Result<()> {
    let path = format!("/v1/agents/{}/key", checked(name)?);
    let key_path = key_out.unwrap_or_else(|| {
        PathBuf::from(format!("{name}.{}.key.json", agentauth_core::unix_now()))
    });
    write_key(&key_path, &key)?;
    let body = AgentKeyRotation {
        public_jwk: key.public_jwk().to_json(),
        grace_secs: Some(grace_secs),
    };
    match conn
        .admin_with::<_, AgentView>(Method::POST, &path, &body)
        .await
    {
        Ok(agent) => {
            println!("rotated the key of {} (new key {})", agent.name, agent.jkt);
            println!(
                "new private key written to {}; the old key authenticates for {grace_secs} s more",
                key_path.display()
            );
            Ok(())
        }
        Err(e) => {
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
