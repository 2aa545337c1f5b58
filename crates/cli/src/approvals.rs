//! `agentauth approvals …`: list the token requests that wait for a person,
//! and approve or deny them.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use agentauth_api::{ApprovalList, ApprovalVerdict, ApprovalView};
use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::Value;

use crate::admin_client::Connection;

/// Which approvals to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusFilter {
    /// Waiting for a person (including ones that expired unanswered).
    Pending,
    /// Approved, not used yet.
    Approved,
    /// Denied.
    Denied,
    /// Approved and consumed by the token issued under it.
    Used,
    /// Every approval.
    All,
}

impl StatusFilter {
    /// The value of the `status` query parameter.
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Used => "used",
            Self::All => "all",
        }
    }
}

/// Approval commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalsCommand {
    /// List approvals, newest first.
    List {
        /// Which approvals.
        #[arg(long, value_enum, default_value_t = StatusFilter::Pending)]
        status: StatusFilter,
        /// At most this many.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Print the authority's JSON as is.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Approve a pending request: the agent's next poll gets its token.
    Approve {
        /// Approval ID (apr-…).
        id: String,
        /// Optional check: the decision is recorded under the credential's
        /// holder (an operator, or `admin`); if given, this must be that name.
        #[arg(long)]
        by: Option<String>,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Deny a pending request: the agent's next poll gets access_denied.
    Deny {
        /// Approval ID (apr-…).
        id: String,
        /// Why (required; the agent is told).
        #[arg(long)]
        reason: String,
        /// Optional check: the decision is recorded under the credential's
        /// holder; if given, this must be that name.
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Runs an approvals command.
pub(crate) async fn run(cmd: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ApprovalsCommand::List {
            status,
            limit,
            json,
            conn,
        } => {
            let path = format!("/v1/approvals?status={}&limit={limit}", status.as_str());
            let list: ApprovalList = conn.admin(Method::GET, &path).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            if list.approvals.is_empty() {
                println!("no approvals");
            }
            for approval in &list.approvals {
                println!("{}", approval_line(approval));
            }
        }
        ApprovalsCommand::Approve {
            id,
            by,
            reason,
            conn,
        } => {
            let verdict = ApprovalVerdict { by, reason };
            decide(&conn, &id, "approve", &verdict).await?;
            println!("approved {id}");
        }
        ApprovalsCommand::Deny {
            id,
            reason,
            by,
            conn,
        } => {
            if reason.trim().is_empty() {
                bail!("a denial needs a --reason");
            }
            let verdict = ApprovalVerdict {
                by,
                reason: Some(reason),
            };
            decide(&conn, &id, "deny", &verdict).await?;
            println!("denied {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends an approve or deny call for `id`.
async fn decide(
    conn: &Connection,
    id: &str,
    verb: &str,
    verdict: &ApprovalVerdict,
) -> anyhow::Result<()> {
    let id = checked_id(id)?;
    let _: ApprovalView = conn
        .admin_with(Method::POST, &format!("/v1/approvals/{id}/{verb}"), verdict)
        .await?;
    Ok(())
}

/// An approval ID, checked so it is safe in a URL path.
fn checked_id(id: &str) -> anyhow::Result<&str> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        bail!(
            "\"{}\" is not an approval ID",
            id.chars().take(64).collect::<String>()
        );
    }
    Ok(id)
}

/// A value for a one-line listing: `-` when empty, quoted when it has spaces,
/// quotes or control characters.
fn field(value: &str) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        Value::from(value).to_string()
    } else {
        value.to_owned()
    }
}

/// One line of `approvals list`.
fn approval_line(a: &ApprovalView) -> String {
    let optional = |value: &Option<String>| field(value.as_deref().unwrap_or(""));
    let expires = humantime::format_rfc3339_seconds(
        UNIX_EPOCH + Duration::from_secs(a.expires_at.max(0) as u64),
    );
    let mut line = format!(
        "{} {} agent={} scope={} audience={} txn={} purpose={} context={} lifetime={}s policies={} approvers={} expires={}",
        field(&a.id),
        a.status.as_str(),
        field(&a.agent),
        field(&a.scope),
        field(&a.audience),
        field(&a.txn),
        field(&a.purpose),
        field(&a.request_context),
        a.lifetime,
        field(&a.policies.join(",")),
        optional(&a.approvers),
        expires
    );
    if a.decided_by.is_some() {
        line.push_str(&format!(
            " decided_by={} reason={}",
            optional(&a.decided_by),
            optional(&a.reason)
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn view(body: Value) -> ApprovalView {
        serde_json::from_value(body).expect("the authority's approval shape")
    }

    #[test]
    fn an_approval_is_one_line() {
        let line = approval_line(&view(json!({
            "id": "apr-abc", "status": "pending", "agent": "billing", "subject": "billing",
            "audience": "spiffe://example.org/agent/payments",
            "scope": "payments:refund payments:read", "txn": "t-1",
            "purpose": "refund order\n42", "grant_type": "client_credentials",
            "request_context": "{\"amount\":5}", "lifetime": 60,
            "policies": ["big-refund", "prod"], "approvers": null,
            "created_at": 0, "expires_at": 60,
            "decided_by": null, "decided_at": null, "reason": null
        })));
        assert_eq!(
            line,
            "apr-abc pending agent=billing scope=\"payments:refund payments:read\" \
             audience=spiffe://example.org/agent/payments txn=t-1 \
             purpose=\"refund order\\n42\" context=\"{\\\"amount\\\":5}\" lifetime=60s \
             policies=big-refund,prod approvers=- \
             expires=1970-01-01T00:01:00Z"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn ids_that_are_not_path_safe_are_refused() {
        assert_eq!(checked_id("apr-Ab_9").unwrap(), "apr-Ab_9");
        assert!(checked_id("").is_err());
        assert!(checked_id("../agents").is_err());
        assert!(checked_id("a?b").is_err());
        assert!(checked_id(&"a".repeat(65)).is_err());
    }
}
