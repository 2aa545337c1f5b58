//! Delegation grants: the permissions one agent lets another act on its
//! behalf with.

use agentauth_core::{AuditEvent, SpiffeId};
use sqlx::{ColumnIndex, Executor, Row as _};

use super::{
    Backend, Column, Conn, Param, Row, RowsAffected as _, Sql, json_scope, parsed, scope_from_json,
};
use crate::{DelegationRow, Result, StoreError};

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
    pub(super) async fn put_delegation(
        &self,
        grant: &DelegationRow,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "INSERT INTO delegations (from_agent, to_agent, permissions, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (from_agent, to_agent) DO UPDATE SET permissions = excluded.permissions, \
             created_at = excluded.created_at",
        )
        .bind(grant.from.as_str())
        .bind(grant.to.as_str())
        .bind(json_scope(&grant.permissions))
        .bind(grant.created_at)
        .execute(&mut *tx)
        .await?;
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await
    }

    pub(super) async fn delegation(
        &self,
        from: &SpiffeId,
        to: &SpiffeId,
    ) -> Result<Option<DelegationRow>> {
        let row = sqlx::query("SELECT * FROM delegations WHERE from_agent = $1 AND to_agent = $2")
            .bind(from.as_str())
            .bind(to.as_str())
            .fetch_optional(self.0.pool())
            .await?;
        row.as_ref().map(Self::delegation_from_row).transpose()
    }

    pub(super) async fn delegations(&self, from: &SpiffeId) -> Result<Vec<DelegationRow>> {
        let rows = sqlx::query("SELECT * FROM delegations WHERE from_agent = $1 ORDER BY to_agent")
            .bind(from.as_str())
            .fetch_all(self.0.pool())
            .await?;
        rows.iter().map(Self::delegation_from_row).collect()
    }

    pub(super) async fn delete_delegation(
        &self,
        from: &SpiffeId,
        to: &SpiffeId,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let done = sqlx::query("DELETE FROM delegations WHERE from_agent = $1 AND to_agent = $2")
            .bind(from.as_str())
            .bind(to.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "a delegation from {from} to {to}"
            )));
        }
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await
    }

    fn delegation_from_row(row: &Row<B>) -> Result<DelegationRow> {
        let permissions: String = row.try_get("permissions")?;
        let from: String = row.try_get("from_agent")?;
        let to: String = row.try_get("to_agent")?;
        Ok(DelegationRow {
            from: parsed("delegation from_agent", &from, SpiffeId::parse)?,
            to: parsed("delegation to_agent", &to, SpiffeId::parse)?,
            permissions: scope_from_json("delegation permissions", &permissions)?,
            created_at: row.try_get("created_at")?,
        })
    }
}
