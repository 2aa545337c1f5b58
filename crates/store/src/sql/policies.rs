//! Policy set versions: storing them, and which one is active.

use agentauth_core::AuditEvent;
use sqlx::{ColumnIndex, Executor, Row as _};

use super::{Backend, Column, Conn, Param, Row, Sql};
use crate::{PolicySetRow, Result, RevocationAction, RevocationKind, StoreError};

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
    pub(super) async fn add_policy_set(
        &self,
        files: &str,
        digest: &str,
        policy_count: i64,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<i64> {
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(
            "INSERT INTO policy_sets (files, digest, policy_count, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING version",
        )
        .bind(files)
        .bind(digest)
        .bind(policy_count)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let version: i64 = row.try_get("version")?;
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        Ok(version)
    }

    pub(super) async fn policy_sets(&self) -> Result<Vec<PolicySetRow>> {
        let rows = sqlx::query(
            "SELECT p.version, p.files, p.digest, p.policy_count, p.created_at, a.version AS active_version \
             FROM policy_sets p LEFT JOIN policy_active a ON a.version = p.version ORDER BY p.version DESC",
        )
        .fetch_all(self.0.pool())
        .await?;
        rows.iter().map(Self::policy_set_from_row).collect()
    }

    pub(super) async fn policy_set(&self, version: i64) -> Result<Option<PolicySetRow>> {
        let row = sqlx::query(
            "SELECT p.version, p.files, p.digest, p.policy_count, p.created_at, a.version AS active_version \
             FROM policy_sets p LEFT JOIN policy_active a ON a.version = p.version WHERE p.version = $1",
        )
        .bind(version)
        .fetch_optional(self.0.pool())
        .await?;
        row.as_ref().map(Self::policy_set_from_row).transpose()
    }

    pub(super) async fn active_policy_set(&self) -> Result<Option<PolicySetRow>> {
        let row = sqlx::query(
            "SELECT p.version, p.files, p.digest, p.policy_count, p.created_at, a.version AS active_version \
             FROM policy_active a JOIN policy_sets p ON p.version = a.version WHERE a.id = 1",
        )
        .fetch_optional(self.0.pool())
        .await?;
        row.as_ref().map(Self::policy_set_from_row).transpose()
    }

    pub(super) async fn activate_policy_set(
        &self,
        version: i64,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let exists = sqlx::query("SELECT 1 AS one FROM policy_sets WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "policy set version {version}"
            )));
        }
        sqlx::query(
            "INSERT INTO policy_active (id, version, activated_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at",
        )
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Self::publish(
            &mut tx,
            RevocationKind::Policy,
            &version.to_string(),
            RevocationAction::Revoke,
            now,
            None,
        )
        .await?;
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await
    }

    /// Reads a policy set from a row that carries `active_version` (the
    /// active version when it is this one, else NULL).
    fn policy_set_from_row(row: &Row<B>) -> Result<PolicySetRow> {
        let active: Option<i64> = row.try_get("active_version")?;
        Ok(PolicySetRow {
            version: row.try_get("version")?,
            files: row.try_get("files")?,
            digest: row.try_get("digest")?,
            policy_count: row.try_get("policy_count")?,
            created_at: row.try_get("created_at")?,
            active: active.is_some(),
        })
    }
}
