//! Tasks (`txn`): whether one is known or revoked, revoking it, and its
//! audit trail.

use agentauth_core::{AuditEvent, AuditRecord};
use sqlx::{ColumnIndex, Executor};

use super::{Backend, Column, Conn, Param, Row, Sql};
use crate::{Result, RevocationAction, RevocationKind};

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
        let row = sqlx::query("SELECT 1 AS one FROM issued_tokens WHERE txn = $1 LIMIT 1")
            .bind(txn)
            .fetch_optional(self.0.pool())
            .await?;
        Ok(row.is_some())
    }

    pub(super) async fn task_records(&self, txn: &str) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE txn = $1 ORDER BY seq LIMIT 10000")
            .bind(txn)
            .fetch_all(self.0.pool())
            .await?;
        rows.iter().map(Self::audit_from_row).collect()
    }
}
