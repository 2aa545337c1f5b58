//! Delegation grants: `POST/GET /v1/agents/{name}/delegations` and
//! `DELETE /v1/agents/{name}/delegations/{to}`.

use serde::{Deserialize, Serialize};

/// Body of `POST /v1/agents/{name}/delegations`: let the agent pass these
/// permissions, which it must hold, on to `to` by token exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDelegation {
    /// The agent it may delegate to, by name or SPIFFE ID.
    pub to: String,
    /// What it may delegate.
    pub permissions: Vec<String>,
}

/// A delegation grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The delegating agent's SPIFFE ID.
    pub from: String,
    /// The SPIFFE ID of the agent it may delegate to.
    pub to: String,
    /// What it may delegate.
    pub permissions: Vec<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
}

/// The answer of `GET /v1/agents/{name}/delegations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationList {
    /// The agent's grants.
    pub delegations: Vec<Delegation>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::pinned;

    #[test]
    fn a_grant_names_both_agents() {
        pinned(
            &DelegationList {
                delegations: vec![Delegation {
                    from: "spiffe://td/agent/a".into(),
                    to: "spiffe://td/agent/b".into(),
                    permissions: vec!["read:db".into()],
                    created_at: 7,
                }],
            },
            r#"
{
  "delegations": [
    {
      "from": "spiffe://td/agent/a",
      "to": "spiffe://td/agent/b",
      "permissions": [
        "read:db"
      ],
      "created_at": 7
    }
  ]
}"#,
        );
    }

    #[test]
    fn a_new_grant_is_to_and_permissions() {
        pinned(
            &NewDelegation {
                to: "b".into(),
                permissions: vec!["read:db".into()],
            },
            r#"
{
  "to": "b",
  "permissions": [
    "read:db"
  ]
}"#,
        );
        let extra = r#"{"to": "b", "permissions": [], "from": "c"}"#;
        assert!(serde_json::from_str::<NewDelegation>(extra).is_err());
    }
}
