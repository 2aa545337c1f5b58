//! The agent registry: `POST/GET /v1/agents` and
//! `GET/PATCH/DELETE /v1/agents/{name}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whether an agent may get tokens and be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Normal operation.
    Active,
    /// No new tokens; existing ones are refused by verifiers.
    Disabled,
}

impl AgentStatus {
    /// The wire name, for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

/// Body of `POST /v1/agents`: a new agent (admin), or an ephemeral child of
/// the calling agent. Defaults are left out when written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// Registry name, `[a-z0-9][a-z0-9-]{0,62}`.
    pub name: String,
    /// What the agent does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Who is responsible for it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// The most the agent may ever hold.
    pub permissions: Vec<String>,
    /// The agent's public key as a JWK (Ed25519 or P-256).
    pub public_jwk: Value,
    /// Opt out of key-bound tokens (shown in the registry and audit).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bearer_allowed: bool,
    /// Seconds until the agent stops working: optional for the admin,
    /// required (at most an hour) for a spawning agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// Labels policies can test; a spawned agent always has its parent's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Workload API entry: selectors (`unix:uid:1000`, `unix:gid:1000`,
    /// `unix:path:/usr/bin/x`, `unix:sha256:HEX`) a local process must all
    /// have to get this agent's SVIDs from the socket. Admin only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selectors: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// Body of `POST /v1/agents/{name}/key`: the agent's new public key. The
/// key it replaces still authenticates the agent for `grace_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentKeyRotation {
    /// The new public key as a JWK (Ed25519 or P-256).
    pub public_jwk: Value,
    /// Seconds the old key keeps authenticating the agent: 0 to 86400,
    /// 600 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_secs: Option<i64>,
}

/// Body of `PATCH /v1/agents/{name}`: what to change; at least one field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    /// The new permission set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// The new description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Disable or re-enable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AgentStatus>,
    /// The new bearer opt-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_allowed: Option<bool>,
    /// The new tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// The new Workload API selectors (an empty list withdraws the entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selectors: Option<Vec<String>>,
}

/// A registry entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    /// Registry name.
    pub name: String,
    /// SPIFFE ID.
    pub id: String,
    /// The OAuth client_id: the SPIFFE ID again.
    pub client_id: String,
    /// What the agent does.
    pub description: String,
    /// Who is responsible for it.
    pub owner: String,
    /// The most the agent may ever hold.
    pub permissions: Vec<String>,
    /// The agent's public key as a JWK.
    pub public_jwk: Value,
    /// The key's RFC 7638 thumbprint.
    pub jkt: String,
    /// Active or disabled.
    pub status: AgentStatus,
    /// May get tokens without a key binding.
    pub bearer_allowed: bool,
    /// For ephemeral agents: when the identity stops working (seconds since the epoch).
    pub expires_at: Option<i64>,
    /// For ephemeral agents: the SPIFFE ID of the agent that spawned it.
    pub parent: Option<String>,
    /// Labels policies can test.
    pub tags: Vec<String>,
    /// Workload API selectors; empty when the agent has no entry.
    #[serde(default)]
    pub selectors: Vec<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch.
    pub updated_at: i64,
}

/// The answer of `GET /v1/agents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentList {
    /// Every registry entry.
    pub agents: Vec<AgentView>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::shape::pinned;

    fn reader() -> AgentView {
        AgentView {
            name: "reader".into(),
            id: "spiffe://td/agent/reader".into(),
            client_id: "spiffe://td/agent/reader".into(),
            description: "reads".into(),
            owner: "team-a".into(),
            permissions: vec!["read:customer".into()],
            public_jwk: json!({"crv": "Ed25519", "kty": "OKP", "x": "abc"}),
            jkt: "thumb".into(),
            status: AgentStatus::Active,
            bearer_allowed: false,
            expires_at: None,
            parent: None,
            tags: vec![],
            selectors: vec![],
            created_at: 1,
            updated_at: 2,
        }
    }

    #[test]
    fn an_agent_view_shows_absent_expiry_and_parent_as_null() {
        pinned(
            &AgentList {
                agents: vec![reader()],
            },
            r#"
{
  "agents": [
    {
      "name": "reader",
      "id": "spiffe://td/agent/reader",
      "client_id": "spiffe://td/agent/reader",
      "description": "reads",
      "owner": "team-a",
      "permissions": [
        "read:customer"
      ],
      "public_jwk": {
        "crv": "Ed25519",
        "kty": "OKP",
        "x": "abc"
      },
      "jkt": "thumb",
      "status": "active",
      "bearer_allowed": false,
      "expires_at": null,
      "parent": null,
      "tags": [],
      "selectors": [],
      "created_at": 1,
      "updated_at": 2
    }
  ]
}"#,
        );
    }

    #[test]
    fn a_spawned_agent_shows_its_expiry_and_parent() {
        let child = AgentView {
            status: AgentStatus::Disabled,
            expires_at: Some(100),
            parent: Some("spiffe://td/agent/planner".into()),
            ..reader()
        };
        let written = serde_json::to_value(&child).unwrap();
        assert_eq!(written["status"], "disabled");
        assert_eq!(written["expires_at"], 100);
        assert_eq!(written["parent"], "spiffe://td/agent/planner");
    }

    #[test]
    fn a_status_shows_as_its_wire_name() {
        for status in [AgentStatus::Active, AgentStatus::Disabled] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }

    #[test]
    fn a_new_agent_leaves_defaults_out() {
        pinned(
            &NewAgent {
                name: "reader".into(),
                description: String::new(),
                owner: String::new(),
                permissions: vec!["read:customer".into()],
                public_jwk: json!({"kty": "OKP"}),
                bearer_allowed: false,
                expires_in: None,
                tags: vec![],
                selectors: vec![],
            },
            r#"
{
  "name": "reader",
  "permissions": [
    "read:customer"
  ],
  "public_jwk": {
    "kty": "OKP"
  }
}"#,
        );
        let full = r#"{"name": "w", "description": "d", "owner": "o", "permissions": [],
            "public_jwk": {}, "bearer_allowed": true, "expires_in": 60, "tags": ["t"]}"#;
        let read: NewAgent = serde_json::from_str(full).unwrap();
        assert!(read.bearer_allowed && read.expires_in == Some(60) && read.tags == ["t"]);
    }

    #[test]
    fn a_new_agent_refuses_unknown_fields() {
        let body = r#"{"name": "w", "permissions": [], "public_jwk": {}, "admin": true}"#;
        assert!(serde_json::from_str::<NewAgent>(body).is_err());
    }

    #[test]
    fn a_patch_writes_only_what_changes() {
        pinned(
            &AgentPatch {
                status: Some(AgentStatus::Disabled),
                ..AgentPatch::default()
            },
            r#"
{
  "status": "disabled"
}"#,
        );
        assert!(serde_json::from_str::<AgentPatch>(r#"{"name": "x"}"#).is_err());
    }
}
