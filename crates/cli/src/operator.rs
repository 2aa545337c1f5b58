//! `agentauth operator …`: the people who decide approvals, each with their
//! own credential, managed with the admin's rights.

use std::process::ExitCode;

use agentauth_api::{NewOperator, OperatorCreated, OperatorList};
use clap::Subcommand;
use reqwest::Method;

use crate::admin_client::Connection;

/// `agentauth operator …`.
#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCommand {
    /// Add an operator and print their credential, once (stdout: only the
    /// credential). They present it as AGENTAUTH_ADMIN_TOKEN; decisions and
    /// admin actions are then recorded under their name.
    Add {
        /// Unique name (letters, digits, '-', '_', '.').
        name: String,
        /// A group they belong to, as `@approvers("…")` names it; `admin`
        /// gives them the admin's rights. Repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List operators and their groups.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Remove an operator: their credential stops working.
    Remove {
        /// The operator's name.
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub(crate) async fn run(cmd: OperatorCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OperatorCommand::Add { name, groups, conn } => {
            let created: OperatorCreated = conn
                .admin_with(Method::POST, "/v1/operators", &NewOperator { name, groups })
                .await?;
            eprintln!(
                "operator {} added (groups: {}); their credential, shown once:",
                created.operator.name,
                shown_groups(&created.operator.groups)
            );
            println!("{}", created.operator_token);
        }
        OperatorCommand::List { conn } => {
            let list: OperatorList = conn.admin(Method::GET, "/v1/operators").await?;
            if list.operators.is_empty() {
                println!("no operators");
            }
            for op in &list.operators {
                println!("{} groups={}", op.name, shown_groups(&op.groups));
            }
        }
        OperatorCommand::Remove { name, conn } => {
            let name = agentauth_core::AgentName::new(&name)?;
            conn.admin::<()>(Method::DELETE, &format!("/v1/operators/{name}"))
                .await?;
            println!("removed operator {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn shown_groups(groups: &[String]) -> String {
    if groups.is_empty() {
        "-".to_owned()
    } else {
        groups.join(",")
    }
}
