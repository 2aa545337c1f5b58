//! The `agentauth` command line. One binary runs the authority (`serve`),
//! administers it (`agent`, `token`, `revoke`, `audit`, `policy`,
//! `approvals`, `keys`) and demonstrates it (`demo`).

mod admin;
mod admin_client;
mod agent;
mod approvals;
mod audit;
mod backup;
mod ca;
mod demo;
mod federation;
mod keys;
mod master_key;
mod node;
mod operator;
mod policy;
mod revoke;
mod serve;
mod token;
mod traces;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// agentauth: per-agent identity, tokens, revocation and audit for multi-agent systems.
#[derive(Debug, Parser)]
#[command(name = "agentauth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the authority (embedded SQLite by default).
    Serve(Box<serve::ServeArgs>),
    /// Register and manage agents.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Get and inspect access tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Revoke an agent, a token (and every token exchanged from it) or a task.
    Revoke {
        /// What to revoke.
        #[arg(value_enum)]
        kind: revoke::RevokeKind,
        /// Agent name, token ID (jti) or task ID (txn).
        value: String,
        #[command(flatten)]
        conn: admin_client::Connection,
    },
    /// Verify, read and export the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Load, list, show, diff, activate and dry-run versioned Cedar policy sets.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// List, approve and deny token requests that wait for a person's approval.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// List and rotate the authority's signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// List and rotate the certificate authorities of X.509-SVIDs.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Run a node that serves the SPIFFE Workload API on this host for the
    /// agents assigned to it (`node:NAME` selectors), or manage nodes:
    /// `node token`, `node list`, `node evict`.
    Node(node::NodeArgs),
    /// Follow, list, refresh and remove foreign trust domains (SPIFFE
    /// federation).
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Care of the admin credential (rotate it).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Replace the master key that seals the signing keys (offline).
    #[command(subcommand)]
    MasterKey(master_key::MasterKeyCommand),
    /// Add, list and remove operators: the people who decide approvals.
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Copy the SQLite store while the authority runs (SQLite's online
    /// backup API); PostgreSQL is backed up with pg_dump.
    Backup(backup::BackupArgs),
    /// Run the two-agent scenario end to end over real HTTP and report each step.
    Demo(demo::DemoArgs),
}

/// Runs the command line and turns any error into one line on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Agent(cmd) => agent::run(cmd).await,
            Command::Token(cmd) => token::run(cmd).await,
            Command::Audit(cmd) => audit::run(cmd).await,
            Command::Policy(cmd) => policy::run(cmd).await,
            Command::Approvals(cmd) => approvals::run(cmd).await,
            Command::Revoke { kind, value, conn } => revoke::run(kind, &value, &conn).await,
            Command::Keys(cmd) => keys::run(cmd).await,
            Command::Ca(cmd) => ca::run(cmd).await,
            Command::Federation(cmd) => federation::run(cmd).await,
            Command::Node(args) => node::run(args).await,
            Command::Admin(cmd) => admin::run(cmd).await,
            Command::MasterKey(cmd) => master_key::run(cmd).await,
            Command::Operator(cmd) => operator::run(cmd).await,
            Command::Backup(args) => backup::run(args).await,
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let joined = e
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    joined.split_whitespace().collect::<Vec<_>>().join(" ")
}
