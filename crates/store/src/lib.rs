//! agentauth's persistence: the [`Store`] trait and its SQLite (default,
//! embedded) and PostgreSQL (shared by replicas) implementations.
//!
//! Every method that writes is one transaction: a request's change and the
//! audit record that reports it commit together or not at all.

mod backup;
mod changes;
mod error;
mod model;
mod postgres;
#[cfg(any(test, feature = "test-support"))]
mod scratch;
mod sql;
mod sqlite;

#[cfg(test)]
mod suite;

use std::sync::Arc;

use agentauth_core::{AgentName, AuditEvent, AuditRecord, Jkt, SpiffeId, TaskId};
use async_trait::async_trait;

// The public interface is:
pub use backup::backup_sqlite;
pub use error::StoreError;

pub use changes::{CHANGES_CHANNEL, Change, ChangeSignals, Changes};
pub use model::{
    AgentRow, AgentStatus, AgentUpdate, ApprovalDecision, ApprovalRequest, ApprovalRow,
    ApprovalStatus, AuditFilter, DelegationRow, IssuedToken, OperatorRow, PolicySetRow,
    RevocationAction, RevocationKind, RevocationRow, SigningKeyRow, UsedAssertion,
};
pub use postgres::PgStore;
#[cfg(any(test, feature = "test-support"))]
pub use scratch::{DEFAULT_TEST_DATABASE_URL, ScratchDatabase};
pub use sqlite::SqliteStore;

/// Result of a store operation.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything the authority keeps. Implementations must make each write
/// method atomic, including the audit records passed to it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Asks the database something trivial (`SELECT 1`): whether it answers,
    /// for the authority's readiness check.
    async fn ping(&self) -> Result<()>;
    /// Signals of what other processes change: revocations, policy
    /// activations, the admin credential and operators (PostgreSQL
    /// `LISTEN/NOTIFY` on [`CHANGES_CHANNEL`]). On SQLite, whose only writer
    /// is this process, they never fire. Call once and clone.
    async fn change_signals(&self) -> Result<ChangeSignals>;
    /// A bootstrap setting (admin credential hash, …).
    async fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` under `key` unless a value is there; returns the value that won.
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;
    /// Replaces `key`'s value with `value` only if it is still `expected`
    /// (compare and swap), with `audit`, in one transaction; returns whether
    /// it was replaced. Nothing is written when it was not.
    async fn replace_setting(
        &self,
        key: &str,
        expected: &str,
        value: &str,
        audit: &AuditEvent,
    ) -> Result<bool>;

    /// The authority's signing keys, oldest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>>;
    /// Adds a signing key, with the audit record that reports it if given,
    /// in one transaction. A key ID already there is [`StoreError::Conflict`].
    async fn add_signing_key(&self, key: &SigningKeyRow, audit: Option<&AuditEvent>) -> Result<()>;
    /// A master-key rotation, in one transaction: replaces the sealed
    /// private part of every signing key (`keys`: key ID, new sealed text),
    /// sets each of `settings` (key, value) and appends `audit`.
    /// [`StoreError::Stale`] if `keys` are not exactly the stored keys (one
    /// was added meanwhile); nothing is written then.
    async fn reseal(
        &self,
        keys: &[(String, String)],
        settings: &[(String, String)],
        audit: &AuditEvent,
    ) -> Result<()>;

    /// One agent by name.
    async fn agent(&self, name: &AgentName) -> Result<Option<AgentRow>>;
    /// All agents, by name.
    async fn agents(&self) -> Result<Vec<AgentRow>>;
    /// The agents with Workload API selectors (registration entries), by name.
    async fn agents_with_selectors(&self) -> Result<Vec<AgentRow>>;
    /// Registers an agent; [`StoreError::Conflict`] if the name is taken. An
    /// agent with a `parent` (spawned) is refused with [`StoreError::NotFound`]
    /// unless the parent exists, is active and has not expired at `created_at`,
    /// checked in the same transaction.
    async fn create_agent(&self, agent: &AgentRow, audit: &AuditEvent) -> Result<()>;
    /// Registers a spawned agent (`agent.parent` set) as [`Store::create_agent`]
    /// does, and fails with [`StoreError::TooManyChildren`] if its parent
    /// already has `max_live_children` active, unexpired children, counted
    /// in the same transaction (the parent row locked), so racing spawns
    /// never exceed the limit.
    async fn spawn_agent(
        &self,
        agent: &AgentRow,
        max_live_children: i64,
        audit: &AuditEvent,
    ) -> Result<()>;
    /// Changes an agent; a status change is published on the revocation feed.
    ///
    /// Re-enabling a spawned agent fails with [`StoreError::Stale`] unless
    /// its parent exists, is active and is the agent that spawned it (not
    /// newer than the child).
    ///
    /// Disabling an agent also disables every active agent descended from it
    /// (through `parent`, recursively) and publishes an agent revocation and
    /// an `agent.revoked` audit record for each. Re-enabling it re-enables
    /// none of them. New permissions are also taken away from descendants
    /// that hold permissions outside them (an `agent.updated` record each).
    async fn update_agent(
        &self,
        name: &AgentName,
        update: &AgentUpdate,
        audit: &AuditEvent,
    ) -> Result<AgentRow>;
    /// Removes an agent and publishes its revocation, with every unexpired
    /// token naming it (presenter, subject or audience) and every token
    /// exchanged from those; removes its delegation grants (both directions)
    /// and expires the pending or approved approvals that name it, so nothing
    /// carries over to a new agent of the name. Its descendants are disabled
    /// and revoked as when it is disabled.
    async fn delete_agent(&self, name: &AgentName, audit: &AuditEvent) -> Result<()>;
    /// Replaces the agent's public key with `public_jwk` and keeps the one
    /// it replaces for client authentication until `previous_until` (any
    /// earlier previous key is dropped), with `audit`, in one transaction;
    /// returns the agent as it is now. [`StoreError::NotFound`] for no
    /// such agent, [`StoreError::Conflict`] when the new key is the current one.
    async fn rotate_agent_key(
        &self,
        name: &AgentName,
        public_jwk: &serde_json::Value,
        previous_until: i64,
        audit: &AuditEvent,
    ) -> Result<AgentRow>;
    /// The key the agent had before its last rotation, if still within its
    /// grace period at `now`.
    async fn previous_agent_key(
        &self,
        id: &SpiffeId,
        now: i64,
    ) -> Result<Option<serde_json::Value>>;

    /// Marks a client assertion used; [`StoreError::ReplayedAssertion`] if it was.
    async fn consume_assertion(&self, assertion: &UsedAssertion) -> Result<()>;
    /// Records an issued token together with the single use of its client
    /// assertion and, if given, of the approval it was issued under: an
    /// approval that is not `approved` and unexpired at `token.issued_at`
    /// fails the whole call with [`StoreError::Stale`]. A token that is not
    /// exchanged (no `parent_jti`) and carries a `txn` starts that task for
    /// its client, or fails the whole call with [`StoreError::TaskOfAnother`]
    /// if another agent started it.
    async fn issue_token(
        &self,
        assertion: &UsedAssertion,
        token: &IssuedToken,
        approval: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<()>;
    /// Whether a token ID has been revoked.
    async fn token_revoked(&self, jti: &str) -> Result<bool>;
    /// Revokes a token ID and every token exchanged from it, and publishes them.
    async fn revoke_token(&self, jti: &str, expires_at: i64, audit: &AuditEvent) -> Result<()>;
    /// Revokes a task and publishes it on the feed.
    async fn revoke_task(&self, txn: &TaskId, expires_at: i64, audit: &AuditEvent) -> Result<()>;
    /// Whether a task has been revoked.
    async fn task_revoked(&self, txn: &TaskId) -> Result<bool>;
    /// Revokes a key (by thumbprint) for good and publishes it on the feed,
    /// with every unexpired token the key authenticated or binds and every
    /// token exchanged from them.
    async fn revoke_key(&self, jkt: &Jkt, audit: &AuditEvent) -> Result<()>;
    /// Whether a key (by thumbprint) has been revoked.
    async fn key_revoked(&self, jkt: &Jkt) -> Result<bool>;
    /// Whether a task is known (started, or some token carries it).
    async fn task_exists(&self, txn: &TaskId) -> Result<bool>;
    /// The agent that started a task, if it was started.
    async fn task_owner(&self, txn: &TaskId) -> Result<Option<SpiffeId>>;

    /// Creates or replaces the grant from `grant.from` to `grant.to`.
    async fn put_delegation(&self, grant: &DelegationRow, audit: &AuditEvent) -> Result<()>;
    /// The grant from one agent to another, if any.
    async fn delegation(&self, from: &SpiffeId, to: &SpiffeId) -> Result<Option<DelegationRow>>;
    /// Every grant of one agent.
    async fn delegations(&self, from: &SpiffeId) -> Result<Vec<DelegationRow>>;
    /// Removes a grant; [`StoreError::NotFound`] if there is none.
    async fn delete_delegation(
        &self,
        from: &SpiffeId,
        to: &SpiffeId,
        audit: &AuditEvent,
    ) -> Result<()>;

    /// Stores a new policy set version (not yet active); returns its version.
    async fn add_policy_set(
        &self,
        files: &str,
        digest: &str,
        policy_count: i64,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<i64>;
    /// Every policy set version, newest first, with files.
    async fn policy_sets(&self) -> Result<Vec<PolicySetRow>>;
    /// One policy set version.
    async fn policy_set(&self, version: i64) -> Result<Option<PolicySetRow>>;
    /// The active version, if one was ever activated.
    async fn active_policy_set(&self) -> Result<Option<PolicySetRow>>;
    /// Makes `version` the active one and publishes a `policy` feed entry;
    /// [`StoreError::NotFound`] if there is no such version.
    async fn activate_policy_set(&self, version: i64, now: i64, audit: &AuditEvent) -> Result<()>;

    /// Records a new pending approval.
    async fn create_approval(&self, approval: &ApprovalRow, audit: &AuditEvent) -> Result<()>;
    /// One approval.
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRow>>;
    /// The newest pending, unexpired approval for exactly this request.
    async fn pending_approval(
        &self,
        request: &ApprovalRequest<'_>,
        now: i64,
    ) -> Result<Option<ApprovalRow>>;
    /// How many pending, unexpired approvals the agents of `lineage` (a
    /// top-level agent and every agent it spawned) have, to bound them.
    async fn pending_approval_count(&self, lineage: &SpiffeId, now: i64) -> Result<i64>;
    /// Adds an operator (a unique name) with its audit record.
    async fn add_operator(&self, operator: &OperatorRow, audit: &AuditEvent) -> Result<()>;
    /// Every operator, by name.
    async fn operators(&self) -> Result<Vec<OperatorRow>>;
    /// Removes an operator, with its audit record; [`StoreError::NotFound`]
    /// if there is none by that name.
    async fn remove_operator(&self, name: &AgentName, audit: &AuditEvent) -> Result<()>;
    /// Approvals with `status` (all if `None`), newest first, at most `limit`.
    async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>>;
    /// Records a poll at `now` if the last one was at least `interval` seconds
    /// before; returns whether it was (a `false` answers `slow_down`).
    async fn poll_approval(&self, id: &str, now: i64, interval: i64) -> Result<bool>;
    /// Approves or denies a pending, unexpired approval; [`StoreError::NotFound`]
    /// if there is none, [`StoreError::Stale`] if it is decided or expired.
    async fn decide_approval(
        &self,
        id: &str,
        decision: &ApprovalDecision,
        audit: &AuditEvent,
    ) -> Result<ApprovalRow>;

    /// Feed entries after `since`, oldest first, at most `limit`.
    async fn revocations_since(&self, since: i64, limit: i64) -> Result<Vec<RevocationRow>>;
    /// Forgets used assertions that expired before `now`, and removes spawned
    /// agents that expired before `now` (with their grants, an `agent.deleted`
    /// audit record each); returns how many rows went.
    async fn purge_expired(&self, now: i64) -> Result<u64>;

    /// Sets the key that authenticates every audit record appended from now
    /// on; until it is set, every write with an audit record fails. A second
    /// call keeps the first key.
    fn set_audit_key(&self, key: agentauth_core::AuditKey);
    /// Authenticates, with the key set, the records of a log that has no
    /// keyed record yet (a database upgraded from before keyed records),
    /// and appends `audit` (an `audit.sealed` record) after them; returns
    /// how many it sealed. Once any record is keyed, nothing is sealed again:
    /// a record without its code is then a sign of tampering.
    async fn seal_unkeyed_audit(&self, audit: &AuditEvent) -> Result<u64>;
    /// Appends events to the hash-chained audit log in one transaction.
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<()>;
    /// Audit records of one task, by sequence number.
    async fn task_records(&self, txn: &TaskId) -> Result<Vec<AuditRecord>>;
    /// Audit records matching `filter`, by sequence number.
    async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;
    /// The chain head: last sequence number and its hash.
    async fn audit_head(&self) -> Result<(i64, String)>;
}

/// Opens the store named by `url`: `postgres://…` for PostgreSQL, otherwise
/// `sqlite://PATH` or a plain file path for SQLite. Runs migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Ok(Arc::new(
            SqliteStore::open(std::path::Path::new(path)).await?,
        ))
    }
}
