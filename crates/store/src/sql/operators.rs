//! Operators: the people who decide approvals, each with a credential kept
//! only as its SHA-256.

use agentauth_core::{AgentName, AuditEvent};
use sqlx::{ColumnIndex, Executor, Row as _};

use super::{Backend, Column, Conn, Param, Row, RowsAffected as _, Sql, json_list, parsed};
use crate::{OperatorRow, Result, StoreError};

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
    pub(super) async fn add_operator(&self, op: &OperatorRow, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let result = sqlx::query(
            "INSERT INTO operators (name, groups, token_sha256, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(op.name.as_str())
        .bind(json_list(&op.groups))
        .bind(&op.token_sha256)
        .bind(op.created_at)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if StoreError::is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("operator \"{}\"", op.name)));
            }
            Err(e) => return Err(e.into()),
        }
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        Self::notify(&mut tx, crate::Change::Credentials).await?;
        tx.commit().await
    }

    pub(super) async fn operators(&self) -> Result<Vec<OperatorRow>> {
        let rows = sqlx::query("SELECT * FROM operators ORDER BY name")
            .fetch_all(self.0.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                let groups: String = row.try_get("groups")?;
                Ok(OperatorRow {
                    name: parsed("operator name", &name, AgentName::new)?,
                    groups: serde_json::from_str(&groups)
                        .map_err(|e| StoreError::Corrupt(format!("operator groups: {e}")))?,
                    token_sha256: row.try_get("token_sha256")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub(super) async fn remove_operator(&self, name: &AgentName, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let gone = sqlx::query("DELETE FROM operators WHERE name = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("operator \"{name}\"")));
        }
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        Self::notify(&mut tx, crate::Change::Credentials).await?;
        tx.commit().await
    }
}
