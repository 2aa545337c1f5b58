//! Bootstrap settings (the admin credential hash, …) and the authority's
//! signing keys.

use sqlx::{ColumnIndex, Executor, Row as _};

use agentauth_core::AuditEvent;

use super::{Column, Conn, Param, Row, RowsAffected as _, Sql};
use crate::sql::Backend;
use crate::{Result, SigningKeyRow, StoreError};

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
    pub(super) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.0.pool()).await?;
        Ok(())
    }

    pub(super) async fn setting(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.0.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        })
    }

    pub(super) async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.try_get("value")?)
    }

    pub(super) async fn replace_setting(
        &self,
        key: &str,
        expected: &str,
        value: &str,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let mut tx = self.0.begin().await?;
        let done = sqlx::query("UPDATE settings SET value = $1 WHERE key = $2 AND value = $3")
            .bind(value)
            .bind(key)
            .bind(expected)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        Self::notify(&mut tx, crate::Change::Credentials).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        let rows = sqlx::query(
            "SELECT kid, alg, public_jwk, sealed_private, created_at, signs_from \
             FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRow {
                    kid: r.try_get("kid")?,
                    alg: r.try_get("alg")?,
                    public_jwk: r.try_get("public_jwk")?,
                    sealed_private: r.try_get("sealed_private")?,
                    created_at: r.try_get("created_at")?,
                    signs_from: r.try_get("signs_from")?,
                })
            })
            .collect()
    }

    pub(super) async fn add_signing_key(
        &self,
        key: &SigningKeyRow,
        audit: Option<&AuditEvent>,
    ) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let added = sqlx::query(
            "INSERT INTO signing_keys (kid, alg, public_jwk, sealed_private, created_at, \
             signs_from) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kid) DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.public_jwk)
        .bind(&key.sealed_private)
        .bind(key.created_at)
        .bind(key.signs_from)
        .execute(&mut *tx)
        .await?;
        if added.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "signing key {} already exists",
                key.kid
            )));
        }
        if let Some(audit) = audit {
            Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn reseal(
        &self,
        keys: &[(String, String)],
        settings: &[(String, String)],
        audit: &AuditEvent,
    ) -> Result<()> {
        let stale = || StoreError::Stale("the signing keys changed during the rotation".into());
        let mut tx = self.0.begin().await?;
        let stored: i64 = sqlx::query("SELECT COUNT(*) AS n FROM signing_keys")
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if usize::try_from(stored).ok() != Some(keys.len()) {
            return Err(stale());
        }
        for (kid, sealed) in keys {
            let done = sqlx::query("UPDATE signing_keys SET sealed_private = $1 WHERE kid = $2")
                .bind(sealed.as_str())
                .bind(kid.as_str())
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() != 1 {
                return Err(stale());
            }
        }
        for (key, value) in settings {
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key.as_str())
            .bind(value.as_str())
            .execute(&mut *tx)
            .await?;
        }
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        Ok(())
    }
}
