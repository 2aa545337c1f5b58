//! Approvals: requests held for a human decision, polled by the agent and
//! used up by the one token issued under them.

use agentauth_core::{AuditEvent, Scope, SpiffeId, TaskId};
use sqlx::{ColumnIndex, Executor, Row as _};

use super::{Backend, Column, Conn, Param, Row, RowsAffected as _, Sql, parsed};
use crate::{ApprovalDecision, ApprovalRequest, ApprovalRow, ApprovalStatus, Result, StoreError};

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
    pub(super) async fn create_approval(
        &self,
        approval: &ApprovalRow,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let result = sqlx::query(
            "INSERT INTO approvals (id, agent, audience, scope, txn, purpose, grant_type, policies, approvers, \
             status, created_at, expires_at, last_poll_at, decided_by, decided_at, reason, subject, \
             request_context, lifetime, lineage) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        )
        .bind(&approval.id)
        .bind(approval.agent.as_str())
        .bind(approval.audience.as_str())
        .bind(approval.scope.to_string())
        .bind(approval.txn.as_ref().map_or("", TaskId::as_str))
        .bind(&approval.purpose)
        .bind(&approval.grant_type)
        .bind(&approval.policies)
        .bind(approval.approvers.as_deref())
        .bind(approval.status.as_str())
        .bind(approval.created_at)
        .bind(approval.expires_at)
        .bind(approval.last_poll_at)
        .bind(approval.decided_by.as_deref())
        .bind(approval.decided_at)
        .bind(approval.reason.as_deref())
        .bind(approval.subject.as_str())
        .bind(&approval.request_context)
        .bind(approval.lifetime)
        .bind(approval.lineage.as_str())
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if StoreError::is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("approval {}", approval.id)));
            }
            Err(e) => return Err(e.into()),
        }
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await
    }

    pub(super) async fn approval(&self, id: &str) -> Result<Option<ApprovalRow>> {
        let row = sqlx::query("SELECT * FROM approvals WHERE id = $1")
            .bind(id)
            .fetch_optional(self.0.pool())
            .await?;
        row.as_ref().map(Self::approval_from_row).transpose()
    }

    pub(super) async fn pending_approval(
        &self,
        request: &ApprovalRequest<'_>,
        now: i64,
    ) -> Result<Option<ApprovalRow>> {
        let row = sqlx::query(
            "SELECT * FROM approvals WHERE agent = $1 AND subject = $2 AND audience = $3 AND scope = $4 \
             AND purpose = $5 AND grant_type = $6 AND ($7 IS NULL OR txn = $7) AND status = $8 AND expires_at > $9 \
             AND request_context = $10 AND lifetime = $11 ORDER BY created_at DESC, id LIMIT 1",
        )
        .bind(request.agent.as_str())
        .bind(request.subject.as_str())
        .bind(request.audience.as_str())
        .bind(request.scope.to_string())
        .bind(request.purpose)
        .bind(request.grant_type)
        .bind(request.txn.map(TaskId::as_str))
        .bind(ApprovalStatus::Pending.as_str())
        .bind(now)
        .bind(request.request_context)
        .bind(request.lifetime)
        .fetch_optional(self.0.pool())
        .await?;
        row.as_ref().map(Self::approval_from_row).transpose()
    }

    pub(super) async fn pending_approval_count(&self, lineage: &SpiffeId, now: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM approvals WHERE lineage = $1 AND status = $2 AND expires_at > $3",
        )
        .bind(lineage.as_str())
        .bind(ApprovalStatus::Pending.as_str())
        .bind(now)
        .fetch_one(self.0.pool())
        .await?;
        Ok(row.try_get("n")?)
    }

    pub(super) async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>> {
        let rows = sqlx::query(
            "SELECT * FROM approvals WHERE ($1 IS NULL OR status = $1) ORDER BY created_at DESC, id LIMIT $2",
        )
        .bind(status.map(ApprovalStatus::as_str))
        .bind(limit)
        .fetch_all(self.0.pool())
        .await?;
        rows.iter().map(Self::approval_from_row).collect()
    }

    pub(super) async fn poll_approval(&self, id: &str, now: i64, interval: i64) -> Result<bool> {
        let mut tx = self.0.begin().await?;
        // One statement tests and records the poll, so of two racing
        // polls only one passes.
        let done = sqlx::query(
            "UPDATE approvals SET last_poll_at = $2 WHERE id = $1 AND last_poll_at <= $2 - $3",
        )
        .bind(id)
        .bind(now)
        .bind(interval)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let exists = sqlx::query("SELECT 1 AS one FROM approvals WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("approval {id}")));
            }
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn decide_approval(
        &self,
        id: &str,
        decision: &ApprovalDecision,
        audit: &AuditEvent,
    ) -> Result<ApprovalRow> {
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "UPDATE approvals SET status = $2, decided_by = $3, decided_at = $4, reason = $5 \
             WHERE id = $1 AND status = $6 AND expires_at > $4 RETURNING *",
        )
        .bind(id)
        .bind(decision.status.as_str())
        .bind(&decision.by)
        .bind(decision.now)
        .bind(decision.reason.as_deref())
        .bind(ApprovalStatus::Pending.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let current = sqlx::query("SELECT * FROM approvals WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(
                match current.as_ref().map(Self::approval_from_row).transpose()? {
                    None => StoreError::NotFound(format!("approval {id}")),
                    Some(a) if a.status != ApprovalStatus::Pending => StoreError::Stale(format!(
                        "the approval is no longer pending (it was {})",
                        a.status.as_str()
                    )),
                    Some(_) => StoreError::Stale("the approval has expired".into()),
                },
            );
        };
        let approval = Self::approval_from_row(&row)?;
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        Ok(approval)
    }

    fn approval_from_row(row: &Row<B>) -> Result<ApprovalRow> {
        let status: String = row.try_get("status")?;
        let id = |column: &str| -> Result<SpiffeId> {
            let text: String = row.try_get(column)?;
            parsed("approval", &text, SpiffeId::parse)
        };
        let scope: String = row.try_get("scope")?;
        let txn: String = row.try_get("txn")?;
        Ok(ApprovalRow {
            id: row.try_get("id")?,
            agent: id("agent")?,
            subject: id("subject")?,
            audience: id("audience")?,
            scope: parsed("approval scope", &scope, Scope::parse)?,
            txn: match txn.as_str() {
                "" => None,
                txn => Some(parsed("approval txn", txn, TaskId::new)?),
            },
            purpose: row.try_get("purpose")?,
            grant_type: row.try_get("grant_type")?,
            request_context: row.try_get("request_context")?,
            lifetime: row.try_get("lifetime")?,
            lineage: id("lineage")?,
            policies: row.try_get("policies")?,
            approvers: row.try_get("approvers")?,
            status: ApprovalStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("approval status {status}")))?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            last_poll_at: row.try_get("last_poll_at")?,
            decided_by: row.try_get("decided_by")?,
            decided_at: row.try_get("decided_at")?,
            reason: row.try_get("reason")?,
        })
    }
}
