//! The one SQL implementation of [`Store`], generic over the [`Backend`]
//! (SQLite or PostgreSQL), with its statements split by domain.
//!
//! Every statement is shared: both databases understand `$N` placeholders,
//! `RETURNING` and `ON CONFLICT`. What differs sits in [`Backend`]: how a
//! write transaction starts (`BEGIN IMMEDIATE` behind an in-process writer
//! queue on SQLite) and row locking (`FOR UPDATE` on PostgreSQL).
//!
//! Each domain module adds its statements to [`Sql`] in one `impl` block.
//! The block repeats the sqlx bounds below: Rust does not carry a trait's
//! `where` clauses over to its users, so they cannot live in [`Backend`].

mod agents;
mod approvals;
mod audit;
mod backend;
mod bulk;
mod delegations;
mod group_commit;
mod operators;
mod policies;
mod read_cache;
mod revocations;
mod settings;
mod tasks;
mod tokens;

use agentauth_core::{AgentName, AuditEvent, AuditRecord, Jkt, SpiffeId, TaskId};
use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

pub(crate) use backend::{Backend, Column, Conn, Param, Row, RowsAffected, Tx};
pub(crate) use bulk::STATEMENT_CACHE_CAPACITY;
pub(crate) use group_commit::GroupCommit;
#[cfg(test)]
pub(crate) use group_commit::QUEUE_BOUND;
pub(crate) use read_cache::{ReadCache, Revocable, WriteGuard};
use revocations::RevocationOrder;

use agentauth_core::Scope;

use crate::{
    AgentRow, AgentUpdate, ApprovalDecision, ApprovalRequest, ApprovalRow, ApprovalStatus,
    AuditFilter, DelegationRow, IssuedToken, OperatorRow, PolicySetRow, Result, RevocationRow,
    SigningKeyRow, Store, StoreError, UsedAssertion,
};

/// The shared statements, run on the store of backend `B`.
pub(crate) struct Sql<'s, B>(&'s B);

/// A list of names as the stores keep it: a JSON array.
fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings always serialises")
}

/// A scope as the stores keep it: a JSON array of its permissions.
fn json_scope(scope: &Scope) -> String {
    json_list(&scope.to_vec())
}

/// A stored scope (a JSON array of permissions); one that no longer parses is corrupt.
fn scope_from_json(what: &str, json: &str) -> Result<Scope> {
    let list: Vec<String> =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))?;
    Scope::from_strs(list.iter().map(String::as_str))
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Parses a stored identifier (SPIFFE ID, agent name, task ID, scope); a
/// value that no longer parses is corrupt, never silently accepted.
fn parsed<T, E: std::fmt::Display>(
    what: &str,
    text: &str,
    parse: impl FnOnce(&str) -> std::result::Result<T, E>,
) -> Result<T> {
    parse(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Runs `write` and then empties the store's read cache, if it has one:
/// every write but a token issuance (and the audit appends and approval
/// bookkeeping around it) may change an agent or a revocation. Should the
/// write be abandoned half-way, the cache holds nothing until that settles.
async fn written<B: Backend, T>(store: &B, write: impl Future<Output = T>) -> T {
    let guard = WriteGuard::new(store.read_cache());
    let result = write.await;
    guard.finish();
    result
}

/// Whether `subject` is revoked: from the store's read cache if it has one
/// and holds the answer, else from `read` (kept for next time).
async fn cached_revocation<B: Backend>(
    store: &B,
    kind: Revocable,
    subject: &str,
    read: impl Future<Output = Result<bool>>,
) -> Result<bool> {
    let Some(cache) = store.read_cache() else {
        return read.await;
    };
    if let Some(revoked) = cache.revoked(kind, subject) {
        return Ok(revoked);
    }
    let generation = cache.generation();
    let revoked = read.await?;
    cache.keep_revoked(generation, kind, subject, revoked);
    Ok(revoked)
}

#[async_trait]
impl<B> Store for B
where
    B: Backend,
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    for<'q> &'q str: Param<'q, B::Db> + ColumnIndex<Row<B>>,
    for<'q> Option<&'q str>: Param<'q, B::Db>,
    String: Column<B::Db>,
    i64: Column<B::Db>,
    Option<i64>: Column<B::Db>,
{
    async fn ping(&self) -> Result<()> {
        Sql(self).ping().await
    }

    async fn change_signals(&self) -> Result<crate::ChangeSignals> {
        Backend::change_signals(self).await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Sql(self).setting(key).await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        written(self, Sql(self).init_setting(key, value)).await
    }

    async fn replace_setting(
        &self,
        key: &str,
        expected: &str,
        value: &str,
        audit: &AuditEvent,
    ) -> Result<bool> {
        written(self, Sql(self).replace_setting(key, expected, value, audit)).await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        Sql(self).signing_keys().await
    }

    async fn add_signing_key(&self, key: &SigningKeyRow, audit: Option<&AuditEvent>) -> Result<()> {
        written(self, Sql(self).add_signing_key(key, audit)).await
    }

    async fn reseal(
        &self,
        keys: &[(String, String)],
        settings: &[(String, String)],
        audit: &AuditEvent,
    ) -> Result<()> {
        written(self, Sql(self).reseal(keys, settings, audit)).await
    }

    async fn agent(&self, name: &AgentName) -> Result<Option<AgentRow>> {
        let Some(cache) = self.read_cache() else {
            return Sql(self).agent(name).await;
        };
        if let Some(agent) = cache.agent(name.as_str()) {
            return Ok(Some(agent));
        }
        let generation = cache.generation();
        let agent = Sql(self).agent(name).await?;
        if let Some(agent) = &agent {
            cache.keep_agent(generation, agent);
        }
        Ok(agent)
    }

    async fn agents(&self) -> Result<Vec<AgentRow>> {
        Sql(self).agents().await
    }

    async fn agents_with_selectors(&self) -> Result<Vec<AgentRow>> {
        Sql(self).agents_with_selectors().await
    }

    async fn create_agent(&self, agent: &AgentRow, audit: &AuditEvent) -> Result<()> {
        written(self, Sql(self).create_agent(agent, audit)).await
    }

    async fn spawn_agent(
        &self,
        agent: &AgentRow,
        max_live_children: i64,
        audit: &AuditEvent,
    ) -> Result<()> {
        written(
            self,
            Sql(self).insert_agent(agent, Some(max_live_children), audit),
        )
        .await
    }

    async fn update_agent(
        &self,
        name: &AgentName,
        update: &AgentUpdate,
        audit: &AuditEvent,
    ) -> Result<AgentRow> {
        written(self, Sql(self).update_agent(name, update, audit)).await
    }

    async fn delete_agent(&self, name: &AgentName, audit: &AuditEvent) -> Result<()> {
        written(self, Sql(self).delete_agent(name, audit)).await
    }

    async fn rotate_agent_key(
        &self,
        name: &AgentName,
        public_jwk: &serde_json::Value,
        previous_until: i64,
        audit: &AuditEvent,
    ) -> Result<AgentRow> {
        written(
            self,
            Sql(self).rotate_agent_key(name, public_jwk, previous_until, audit),
        )
        .await
    }

    async fn previous_agent_key(
        &self,
        id: &SpiffeId,
        now: i64,
    ) -> Result<Option<serde_json::Value>> {
        Sql(self).previous_agent_key(id, now).await
    }

    async fn consume_assertion(&self, assertion: &UsedAssertion) -> Result<()> {
        Sql(self).consume_assertion(assertion).await
    }

    async fn issue_token(
        &self,
        assertion: &UsedAssertion,
        token: &IssuedToken,
        approval: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<()> {
        Sql(self)
            .issue_token(assertion, token, approval, audit)
            .await
    }

    async fn token_revoked(&self, jti: &str) -> Result<bool> {
        cached_revocation(self, Revocable::Token, jti, Sql(self).token_revoked(jti)).await
    }

    async fn revoke_token(&self, jti: &str, expires_at: i64, audit: &AuditEvent) -> Result<()> {
        written(self, Sql(self).revoke_token(jti, expires_at, audit)).await
    }

    async fn revoke_task(&self, txn: &TaskId, expires_at: i64, audit: &AuditEvent) -> Result<()> {
        written(self, Sql(self).revoke_task(txn.as_str(), expires_at, audit)).await
    }

    async fn task_revoked(&self, txn: &TaskId) -> Result<bool> {
        let sql = Sql(self);
        let read = sql.task_revoked(txn.as_str());
        cached_revocation(self, Revocable::Task, txn.as_str(), read).await
    }

    async fn revoke_key(&self, jkt: &Jkt, audit: &AuditEvent) -> Result<()> {
        written(self, Sql(self).revoke_key(&jkt.0, audit)).await
    }

    async fn key_revoked(&self, jkt: &Jkt) -> Result<bool> {
        cached_revocation(self, Revocable::Key, &jkt.0, Sql(self).key_revoked(&jkt.0)).await
    }

    async fn task_exists(&self, txn: &TaskId) -> Result<bool> {
        Sql(self).task_exists(txn.as_str()).await
    }

    async fn task_owner(&self, txn: &TaskId) -> Result<Option<SpiffeId>> {
        Sql(self).task_owner(txn.as_str()).await
    }

    async fn put_delegation(&self, grant: &DelegationRow, audit: &AuditEvent) -> Result<()> {
        written(self, Sql(self).put_delegation(grant, audit)).await
    }

    async fn delegation(&self, from: &SpiffeId, to: &SpiffeId) -> Result<Option<DelegationRow>> {
        Sql(self).delegation(from, to).await
    }

    async fn delegations(&self, from: &SpiffeId) -> Result<Vec<DelegationRow>> {
        Sql(self).delegations(from).await
    }

    async fn delete_delegation(
        &self,
        from: &SpiffeId,
        to: &SpiffeId,
        audit: &AuditEvent,
    ) -> Result<()> {
        written(self, Sql(self).delete_delegation(from, to, audit)).await
    }

    async fn add_policy_set(
        &self,
        files: &str,
        digest: &str,
        policy_count: i64,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<i64> {
        written(
            self,
            Sql(self).add_policy_set(files, digest, policy_count, now, audit),
        )
        .await
    }

    async fn policy_sets(&self) -> Result<Vec<PolicySetRow>> {
        Sql(self).policy_sets().await
    }

    async fn policy_set(&self, version: i64) -> Result<Option<PolicySetRow>> {
        Sql(self).policy_set(version).await
    }

    async fn active_policy_set(&self) -> Result<Option<PolicySetRow>> {
        Sql(self).active_policy_set().await
    }

    async fn activate_policy_set(&self, version: i64, now: i64, audit: &AuditEvent) -> Result<()> {
        written(self, Sql(self).activate_policy_set(version, now, audit)).await
    }

    async fn create_approval(&self, approval: &ApprovalRow, audit: &AuditEvent) -> Result<()> {
        Sql(self).create_approval(approval, audit).await
    }

    async fn approval(&self, id: &str) -> Result<Option<ApprovalRow>> {
        Sql(self).approval(id).await
    }

    async fn pending_approval(
        &self,
        request: &ApprovalRequest<'_>,
        now: i64,
    ) -> Result<Option<ApprovalRow>> {
        Sql(self).pending_approval(request, now).await
    }

    async fn pending_approval_count(&self, lineage: &SpiffeId, now: i64) -> Result<i64> {
        Sql(self).pending_approval_count(lineage, now).await
    }

    async fn add_operator(&self, operator: &OperatorRow, audit: &AuditEvent) -> Result<()> {
        written(self, Sql(self).add_operator(operator, audit)).await
    }

    async fn operators(&self) -> Result<Vec<OperatorRow>> {
        Sql(self).operators().await
    }

    async fn remove_operator(&self, name: &AgentName, audit: &AuditEvent) -> Result<()> {
        written(self, Sql(self).remove_operator(name, audit)).await
    }

    async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>> {
        Sql(self).approvals(status, limit).await
    }

    async fn poll_approval(&self, id: &str, now: i64, interval: i64) -> Result<bool> {
        Sql(self).poll_approval(id, now, interval).await
    }

    async fn decide_approval(
        &self,
        id: &str,
        decision: &ApprovalDecision,
        audit: &AuditEvent,
    ) -> Result<ApprovalRow> {
        written(self, Sql(self).decide_approval(id, decision, audit)).await
    }

    async fn revocations_since(&self, since: i64, limit: i64) -> Result<Vec<RevocationRow>> {
        Sql(self).revocations_since(since, limit).await
    }

    async fn purge_expired(&self, now: i64) -> Result<u64> {
        written(self, Sql(self).purge_expired(now)).await
    }

    fn set_audit_key(&self, key: agentauth_core::AuditKey) {
        let _ = self.audit_key().set(key);
    }

    async fn seal_unkeyed_audit(&self, audit: &AuditEvent) -> Result<u64> {
        written(self, Sql(self).seal_unkeyed_audit(audit)).await
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        Sql(self).append_audit(events).await
    }

    async fn task_records(&self, txn: &TaskId) -> Result<Vec<AuditRecord>> {
        Sql(self).task_records(txn.as_str()).await
    }

    async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        Sql(self).audit_records(filter).await
    }

    async fn audit_head(&self) -> Result<(i64, String)> {
        Sql(self).audit_head().await
    }
}
