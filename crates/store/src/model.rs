//! The rows the store reads and writes: agents, tokens, grants, revocations,
//! policy set versions, approvals and audit filters.

use agentauth_core::{AgentName, AuditKind, Jkt, Scope, SpiffeId, TaskId};
use serde::{Deserialize, Serialize};

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
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// A registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRow {
    /// Registry name.
    pub name: AgentName,
    /// SPIFFE ID, also the OAuth client_id.
    pub id: SpiffeId,
    /// Free text.
    pub description: String,
    /// Who is responsible for the agent.
    pub owner: String,
    /// Upper bound of what the agent may ever hold.
    pub permissions: Scope,
    /// The agent's public key as JWK JSON.
    pub public_jwk: serde_json::Value,
    /// Active or disabled.
    pub status: AgentStatus,
    /// May get tokens without a key binding (`cnf`): an explicit opt-out.
    pub bearer_allowed: bool,
    /// For ephemeral agents: when the identity stops working.
    pub expires_at: Option<i64>,
    /// For ephemeral agents: the SPIFFE ID of the agent that spawned it.
    pub parent: Option<SpiffeId>,
    /// Free-form labels that policies can test (`principal.tags.contains(…)`).
    pub tags: Vec<String>,
    /// Workload API entry: the selectors (`unix:uid:1000`, …) a local
    /// process must all have to get this agent's SVIDs; empty for none.
    pub selectors: Vec<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch.
    pub updated_at: i64,
}

/// A change to an agent; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentUpdate {
    /// New permission set.
    pub permissions: Option<Scope>,
    /// New description.
    pub description: Option<String>,
    /// New status.
    pub status: Option<AgentStatus>,
    /// New bearer opt-out.
    pub bearer_allowed: Option<bool>,
    /// New tags.
    pub tags: Option<Vec<String>>,
    /// New Workload API selectors.
    pub selectors: Option<Vec<String>>,
    /// Time of the change.
    pub now: i64,
}

/// One of the authority's signing keys, private part sealed with the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    /// Key ID (the JWK thumbprint).
    pub kid: String,
    /// JWS algorithm.
    pub alg: String,
    /// Public JWK JSON.
    pub public_jwk: String,
    /// Sealed private JWK (never stored in clear).
    pub sealed_private: String,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// When it starts signing (seconds since the epoch); until then it is
    /// only published, so verifiers learn it first.
    pub signs_from: i64,
}

/// A client assertion that has been presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedAssertion {
    /// The client.
    pub client_id: String,
    /// The assertion's `jti`.
    pub jti: String,
    /// When it stops mattering (its `exp`).
    pub expires_at: i64,
}

/// A record of an access token the authority issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// Token ID.
    pub jti: String,
    /// Presenter.
    pub client_id: SpiffeId,
    /// On whose behalf.
    pub subject: SpiffeId,
    /// Recipient.
    pub audience: SpiffeId,
    /// Granted scope.
    pub scope: Scope,
    /// Issue time.
    pub issued_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// The token it was exchanged from, for cascading revocation.
    pub parent_jti: Option<String>,
    /// The task it belongs to.
    pub txn: Option<TaskId>,
    /// Thumbprint of the agent key that authenticated the issuance (the
    /// client's registered key): revoking that key revokes this token.
    pub auth_jkt: Option<Jkt>,
    /// Thumbprint of the key the token is bound to (`cnf.jkt`), if any.
    pub cnf_jkt: Option<Jkt>,
}

/// A delegation grant: `from` may pass `permissions` on to `to` by token exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DelegationRow {
    /// The delegating agent's SPIFFE ID.
    pub from: SpiffeId,
    /// The agent it may delegate to.
    pub to: SpiffeId,
    /// What it may delegate.
    pub permissions: Scope,
    /// Seconds since the epoch.
    pub created_at: i64,
}

/// What a revocation feed entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationKind {
    /// An agent (by SPIFFE ID): its tokens as presenter or subject.
    Agent,
    /// One token (by `jti`), and every token exchanged from it.
    Token,
    /// A task (by `txn`): every token that carries it.
    Task,
    /// A key (by RFC 7638 thumbprint `jkt`): every token bound to it, and the
    /// agent's authentication with it.
    Key,
    /// Not a revocation: a policy set version was activated (subject = the
    /// version), so verifiers fetch the new set.
    Policy,
}

/// Whether an entry revokes or lifts a revocation (an agent re-enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationAction {
    /// Stop accepting.
    Revoke,
    /// Accept again.
    Restore,
}

/// One entry of the revocation feed, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRow {
    /// Monotonically increasing sequence number.
    pub seq: i64,
    /// Agent or token.
    pub kind: RevocationKind,
    /// SPIFFE ID or `jti`.
    pub subject: String,
    /// Revoke or restore.
    pub action: RevocationAction,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// After this time the entry no longer matters (a token's `exp`).
    pub expires_at: Option<i64>,
}

impl RevocationKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Token => "token",
            Self::Task => "task",
            Self::Key => "key",
            Self::Policy => "policy",
        }
    }
}

impl RevocationAction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Revoke => "revoke",
            Self::Restore => "restore",
        }
    }
}

/// Which audit records to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Records that name this agent as actor, subject or audience.
    pub agent: Option<String>,
    /// Records of this kind.
    pub kind: Option<AuditKind>,
    /// Records after this sequence number.
    pub since: i64,
    /// At most this many.
    pub limit: i64,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            agent: None,
            kind: None,
            since: 0,
            limit: 1000,
        }
    }
}

/// One stored version of a policy set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySetRow {
    /// Version number, from 1, assigned by the store.
    pub version: i64,
    /// The files as JSON: `[{"name": …, "text": …}, …]`.
    pub files: String,
    /// SHA-256 (hex) of `files`, to tell identical loads apart.
    pub digest: String,
    /// How many policies the set has.
    pub policy_count: i64,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Whether this is the active version.
    pub active: bool,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Waiting for a person.
    Pending,
    /// Approved; the agent may collect its token once.
    Approved,
    /// Denied by a person.
    Denied,
    /// Approved and the token was issued.
    Used,
}

impl ApprovalStatus {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Used => "used",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "approved" => Some(Self::Approved),
            "denied" => Some(Self::Denied),
            "used" => Some(Self::Used),
            _ => None,
        }
    }
}

/// A token request waiting for (or given) a person's approval, bound to
/// exactly that request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRow {
    /// Random ID the agent polls with.
    pub id: String,
    /// The requesting agent's SPIFFE ID.
    pub agent: SpiffeId,
    /// On whose behalf (`sub` of the token to be issued): the agent itself,
    /// or for an exchange the subject whose authority is passed on.
    pub subject: SpiffeId,
    /// The target's SPIFFE ID.
    pub audience: SpiffeId,
    /// The scope that needs approval.
    pub scope: Scope,
    /// The task; `None` for a token without one (for the authority itself).
    pub txn: Option<TaskId>,
    /// The stated purpose.
    pub purpose: String,
    /// `client_credentials` or the token-exchange grant URI.
    pub grant_type: String,
    /// The `request_context` the agent sent, as sent ("" for none).
    pub request_context: String,
    /// The token lifetime asked for, in seconds (after the authority's cap).
    pub lifetime: i64,
    /// The top-level ancestor of the agent (itself unless spawned): pending
    /// approvals are counted per lineage.
    pub lineage: SpiffeId,
    /// The policies that asked for approval, space-separated.
    pub policies: String,
    /// Who should approve (`@approvers`), if said.
    pub approvers: Option<String>,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// After this the approval is void.
    pub expires_at: i64,
    /// The last time the agent polled.
    pub last_poll_at: i64,
    /// Who approved or denied.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<i64>,
    /// Why.
    pub reason: Option<String>,
}

/// A person's decision on an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalDecision {
    /// Approved or denied.
    pub status: ApprovalStatus,
    /// Who decided.
    pub by: String,
    /// Why (required for a denial).
    pub reason: Option<String>,
    /// When.
    pub now: i64,
}

/// Which request a pending approval is looked up for: every field must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalRequest<'a> {
    /// The requesting agent.
    pub agent: &'a SpiffeId,
    /// On whose behalf.
    pub subject: &'a SpiffeId,
    /// The target.
    pub audience: &'a SpiffeId,
    /// The scope.
    pub scope: &'a Scope,
    /// The stated purpose.
    pub purpose: &'a str,
    /// The grant type.
    pub grant_type: &'a str,
    /// The task; any task when `None` (the client named none).
    pub txn: Option<&'a TaskId>,
    /// The request context, as sent.
    pub request_context: &'a str,
    /// The lifetime asked for.
    pub lifetime: i64,
}

/// A person who decides approvals (and, in the `admin` group, acts as the
/// admin), with their own credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorRow {
    /// Unique name, as the audit log records it.
    pub name: AgentName,
    /// Approver groups (`@approvers("finance")`), and `admin` for admin rights.
    pub groups: Vec<String>,
    /// SHA-256 of the operator's credential (hex); the credential itself is
    /// shown once and never stored.
    #[serde(skip)]
    pub token_sha256: String,
    /// Seconds since the epoch.
    pub created_at: i64,
}
