//! Tasks (`txn`): whether one is known or revoked, revoking it, and its
//! audit trail.

use agentauth_core::{AuditEvent, AuditRecord, SpiffeId};
use sqlx::{ColumnIndex, Executor, Row as _};

use super::{Backend, Column, Conn, Param, Row, Sql, Tx, parsed};
use crate::{Result, RevocationAction, RevocationKind, StoreError};

impl<B> Sql<'_, B>
where
    B: Backend,
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    for<'q> &'q str: Param<'q, B::Db> + ColumnIndex<Row<B>>,
    for<'q> Option<&'q str>: Param<'q, B::Db>,
    String: Column<B::Db>,
    i64: Column<B::Db>,
    Option<i64>: Column<B::Db>,
{
    pub(super) async fn revoke_task(
        &self,
        txn: &str,
        expires_at: i64,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let now = audit.time_ms / 1000;
        Self::publish(
            &mut tx,
            RevocationKind::Task,
            txn,
            RevocationAction::Revoke,
            now,
            Some(expires_at),
        )
        .await?;
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await
    }

    pub(super) async fn task_revoked(&self, txn: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM revocations WHERE kind = 'task' AND subject = $1 LIMIT 1",
        )
        .bind(txn)
        .fetch_optional(self.0.pool())
        .await?;
        Ok(row.is_some())
    }

    pub(super) async fn task_exists(&self, txn: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM tasks WHERE txn = $1 \
             UNION ALL SELECT 1 AS one FROM issued_tokens WHERE txn = $1 LIMIT 1",
        )
        .bind(txn)
        .fetch_optional(self.0.pool())
        .await?;
        Ok(row.is_some())
    }

    pub(super) async fn task_owner(&self, txn: &str) -> Result<Option<SpiffeId>> {
        let row = sqlx::query("SELECT owner FROM tasks WHERE txn = $1")
            .bind(txn)
            .fetch_optional(self.0.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let owner: String = row.try_get("owner")?;
        parsed("task owner", &owner, SpiffeId::parse).map(Some)
    }

    /// Starts task `txn` for `client` inside `tx`, or finds it started by
    /// `client` before; [`StoreError::TaskOfAnother`] if another agent did.
    /// A concurrent start of the same task waits for this row (PostgreSQL)
    /// or for the write lock (SQLite), so exactly one agent owns it.
    pub(super) async fn start_task(
        tx: &mut Tx<B>,
        txn: &str,
        client: &SpiffeId,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO tasks (txn, owner, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (txn) DO NOTHING",
        )
        .bind(txn)
        .bind(client.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let row = sqlx::query("SELECT owner FROM tasks WHERE txn = $1")
            .bind(txn)
            .fetch_one(&mut **tx)
            .await?;
        let owner: String = row.try_get("owner")?;
        if owner != client.as_str() {
            return Err(StoreError::TaskOfAnother(txn.chars().take(128).collect()));
        }
        Ok(())
    }

    pub(super) async fn task_records(&self, txn: &str) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE txn = $1 ORDER BY seq LIMIT 10000")
            .bind(txn)
            .fetch_all(self.0.pool())
            .await?;
        rows.iter().map(Self::audit_from_row).collect()
    }
}
