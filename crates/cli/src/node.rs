//! `agentauth node`: run a node that serves the SPIFFE Workload API on this
//! host for the agents assigned to it, and `agentauth node token | list |
//! evict` to manage nodes from the authority's side.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agentauth_api::{JoinToken, NewJoinToken, NodeList};
use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use reqwest::Method;
use tokio::signal::unix::{SignalKind, signal};

use crate::admin_client::Connection;

/// `agentauth node [OPTIONS] | node token | node list | node evict`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct NodeArgs {
    #[command(subcommand)]
    command: Option<NodeCommand>,
    #[command(flatten)]
    run: RunArgs,
}

/// Running a node.
#[derive(Debug, Args)]
struct RunArgs {
    /// The authority's base URL; it must serve HTTPS (`serve --tls`).
    #[arg(long, env = "AGENTAUTH_URL", required = true)]
    authority: Option<String>,
    /// PEM CA certificates the authority's TLS certificate chains to (its
    /// trust bundle, brought to this host out of band).
    #[arg(
        long,
        env = "AGENTAUTH_AUTHORITY_BUNDLE",
        value_name = "PEM_FILE",
        required = true
    )]
    authority_bundle: Option<PathBuf>,
    /// The one-time join token from `agentauth node token`, for the first
    /// start; later starts use the node SVID kept in --data-dir.
    #[arg(long, env = "AGENTAUTH_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Serve the Workload API on this Unix socket (a path or unix:///PATH).
    #[arg(long, env = "AGENTAUTH_WORKLOAD_SOCKET", required = true)]
    workload_socket: Option<String>,
    /// Where the node keeps its SVID and key (0700; the file 0600).
    #[arg(
        long,
        env = "AGENTAUTH_NODE_DATA_DIR",
        default_value = "./agentauth-node"
    )]
    data_dir: PathBuf,
    /// Seconds between fetches of the node's entries and the bundles (1 to 3600).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    recheck_secs: u64,
}

/// Managing nodes (admin).
#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Make a one-time join token for node NAME: its first start presents
    /// it and gets the node SVID spiffe://<td>/agentauth/node/NAME. Agents
    /// it may serve carry the selector node:NAME.
    Token {
        /// The node's name (lowercase letters, digits, dashes).
        #[arg(long)]
        name: String,
        /// Seconds the token may be used in (60 to 86400).
        #[arg(long, default_value_t = 600)]
        ttl_secs: i64,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the nodes that attested.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Evict a node: its SVID is refused from its next call on.
    Evict {
        /// The node's name.
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub(crate) async fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(NodeCommand::Token {
            name,
            ttl_secs,
            conn,
        }) => {
            let body = NewJoinToken {
                name,
                ttl_secs: Some(ttl_secs),
            };
            let token: JoinToken = conn
                .admin_with(Method::POST, "/v1/nodes/tokens", &body)
                .await?;
            eprintln!(
                "join token for {}, usable once until {}:",
                token.spiffe_id, token.expires_at
            );
            println!("{}", token.token);
        }
        Some(NodeCommand::List { conn }) => {
            let list: NodeList = conn.admin(Method::GET, "/v1/nodes").await?;
            for node in &list.nodes {
                println!(
                    "{}  {}  attested {}{}",
                    node.name,
                    node.spiffe_id,
                    node.attested_at,
                    if node.evicted { "  evicted" } else { "" }
                );
            }
        }
        Some(NodeCommand::Evict { name, conn }) => {
            let _: serde_json::Value = conn
                .admin(Method::DELETE, &format!("/v1/nodes/{name}"))
                .await?;
            println!("node {name} evicted");
        }
        None => return run_node(args.run).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_node(args: RunArgs) -> anyhow::Result<ExitCode> {
    let _traces = crate::traces::Traces::init(crate::serve::LogFormat::Human, None)?;
    let missing = |what: &str| anyhow!("agentauth node needs {what}");
    let bundle_file = args
        .authority_bundle
        .ok_or_else(|| missing("--authority-bundle"))?;
    let socket = args
        .workload_socket
        .ok_or_else(|| missing("--workload-socket"))?;
    let config = agentauth_node::NodeConfig {
        authority: args.authority.ok_or_else(|| missing("--authority"))?,
        authority_bundle_pem: std::fs::read_to_string(&bundle_file)
            .with_context(|| format!("cannot read {}", bundle_file.display()))?,
        join_token: args.join_token,
        data_dir: args.data_dir,
        socket: if socket.starts_with("unix:") {
            agentauth_workload::socket_path(&socket)?
        } else {
            PathBuf::from(socket)
        },
        recheck: Duration::from_secs(args.recheck_secs),
    };
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    println!("agentauth node serving {}", config.socket.display());
    agentauth_node::run(config, shutdown)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}
