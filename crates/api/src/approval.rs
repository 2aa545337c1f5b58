//! Human approval of token requests: `GET /v1/approvals`,
//! `GET /v1/approvals/{id}` and `POST /v1/approvals/{id}/approve|deny` (admin).

use serde::{Deserialize, Serialize};

/// Where an approval stands, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    /// Waiting for a person.
    Pending,
    /// Approved; the agent may collect its token once.
    Approved,
    /// Denied by a person.
    Denied,
    /// Approved and the token was issued.
    Used,
    /// Pending or approved, but past its expiry.
    Expired,
}

impl ApprovalState {
    /// The wire name, for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Used => "used",
            Self::Expired => "expired",
        }
    }
}

/// A token request waiting for (or given) a person's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// The ID the agent polls with (`apr-…`).
    pub id: String,
    /// Where it stands.
    pub status: ApprovalState,
    /// The requesting agent's SPIFFE ID.
    pub agent: String,
    /// On whose behalf the token would be issued.
    pub subject: String,
    /// The target's SPIFFE ID.
    pub audience: String,
    /// The scope that needs approval, space-separated.
    pub scope: String,
    /// The task.
    pub txn: String,
    /// The stated purpose.
    pub purpose: String,
    /// `client_credentials` or the token-exchange grant URI.
    pub grant_type: String,
    /// The `request_context` the agent sent (empty when none); a token is
    /// issued under the approval only for exactly this context.
    #[serde(default)]
    pub request_context: String,
    /// The token lifetime asked for, in seconds; bound like the context.
    #[serde(default)]
    pub lifetime: i64,
    /// The policies that asked for approval.
    pub policies: Vec<String>,
    /// Who should approve (`@approvers`), if said.
    pub approvers: Option<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// After this the approval is void.
    pub expires_at: i64,
    /// Who approved or denied.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<i64>,
    /// Why.
    pub reason: Option<String>,
}

/// The answer of `GET /v1/approvals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalList {
    /// Approvals, newest first.
    pub approvals: Vec<ApprovalView>,
}

/// Query of `GET /v1/approvals`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    /// `pending`, `approved`, `denied`, `used` or `all` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// At most this many (100 unless given, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// Body of `POST /v1/approvals/{id}/approve` and `…/deny`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalVerdict {
    /// Optional: the person deciding is the one whose credential is
    /// presented. When given it must be that name, or the decision is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why; required to deny.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::pinned;

    #[test]
    fn an_undecided_approval_shows_nulls() {
        pinned(
            &ApprovalList {
                approvals: vec![ApprovalView {
                    id: "apr-1".into(),
                    status: ApprovalState::Expired,
                    agent: "spiffe://td/agent/billing".into(),
                    subject: "spiffe://td/agent/billing".into(),
                    audience: "spiffe://td/agent/payments".into(),
                    scope: "payments:refund".into(),
                    txn: "txn-1".into(),
                    purpose: "refund".into(),
                    grant_type: "client_credentials".into(),
                    request_context: r#"{"amount":5}"#.into(),
                    lifetime: 60,
                    policies: vec!["big-refund".into()],
                    approvers: None,
                    created_at: 1,
                    expires_at: 601,
                    decided_by: None,
                    decided_at: None,
                    reason: None,
                }],
            },
            r#"
{
  "approvals": [
    {
      "id": "apr-1",
      "status": "expired",
      "agent": "spiffe://td/agent/billing",
      "subject": "spiffe://td/agent/billing",
      "audience": "spiffe://td/agent/payments",
      "scope": "payments:refund",
      "txn": "txn-1",
      "purpose": "refund",
      "grant_type": "client_credentials",
      "request_context": "{\"amount\":5}",
      "lifetime": 60,
      "policies": [
        "big-refund"
      ],
      "approvers": null,
      "created_at": 1,
      "expires_at": 601,
      "decided_by": null,
      "decided_at": null,
      "reason": null
    }
  ]
}"#,
        );
    }

    #[test]
    fn every_state_has_its_lowercase_name() {
        let states = [
            ApprovalState::Pending,
            ApprovalState::Approved,
            ApprovalState::Denied,
            ApprovalState::Used,
            ApprovalState::Expired,
        ];
        let names = serde_json::to_string(&states).unwrap();
        assert_eq!(names, r#"["pending","approved","denied","used","expired"]"#);
        for state in states {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }

    #[test]
    fn a_verdict_without_a_reason_leaves_it_out() {
        pinned(
            &ApprovalVerdict {
                by: None,
                reason: None,
            },
            "{}",
        );
        pinned(
            &ApprovalVerdict {
                by: Some("bob".into()),
                reason: Some("too much".into()),
            },
            r#"
{
  "by": "bob",
  "reason": "too much"
}"#,
        );
    }
}
