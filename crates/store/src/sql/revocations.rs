//! The revocation feed: what verifiers follow to stop accepting agents,
//! tokens, tasks and keys (and to fetch a newly activated policy set).

use agentauth_core::AuditEvent;
use sqlx::{ColumnIndex, Executor, Row as _};

use super::tokens::Derived;
use super::{Backend, Column, Conn, Param, Row, Sql, Tx};
use crate::{Change, Result, RevocationAction, RevocationKind, RevocationRow, StoreError};

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
    pub(super) async fn revocations_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<RevocationRow>> {
        let rows = sqlx::query("SELECT * FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(since)
            .bind(limit)
            .fetch_all(self.0.pool())
            .await?;
        rows.iter().map(Self::revocation_from_row).collect()
    }

    pub(super) async fn revoke_key(&self, jkt: &str, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let now = audit.time_ms / 1000;
        Self::publish(
            &mut tx,
            RevocationKind::Key,
            jkt,
            RevocationAction::Revoke,
            now,
            None,
        )
        .await?;
        Self::revoke_derived(&mut tx, Derived::Key, jkt, now).await?;
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await
    }

    pub(super) async fn key_revoked(&self, jkt: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM revocations WHERE kind = 'key' AND subject = $1 LIMIT 1",
        )
        .bind(jkt)
        .fetch_optional(self.0.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Takes the revocation order lock for `tx` (once) where transactions
    /// run concurrently (PostgreSQL); SQLite's single writer orders them
    /// already. See [`RevocationOrder`].
    pub(super) async fn order(tx: &mut Tx<B>, side: RevocationOrder) -> Result<()> {
        if !B::LOCKS_ROWS || tx.ordered {
            return Ok(());
        }
        let sql = match side {
            RevocationOrder::Revoking => "SELECT pg_advisory_xact_lock($1)",
            RevocationOrder::Exchanging => "SELECT pg_advisory_xact_lock_shared($1)",
        };
        sqlx::query(sql)
            .bind(REVOCATION_ORDER_LOCK)
            .execute(&mut **tx)
            .await?;
        tx.ordered = true;
        Ok(())
    }

    /// Adds an entry to the feed inside `tx`.
    pub(super) async fn publish(
        tx: &mut Tx<B>,
        kind: RevocationKind,
        subject: &str,
        action: RevocationAction,
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<()> {
        Self::order(tx, RevocationOrder::Revoking).await?;
        sqlx::query(
            "INSERT INTO revocations (kind, subject, action, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(kind.as_str())
        .bind(subject)
        .bind(action.as_str())
        .bind(now)
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
        let change = match kind {
            RevocationKind::Policy => Change::Policy,
            _ => Change::Revocations,
        };
        Self::notify(tx, change).await
    }

    /// Tells the other processes on the database, at commit, of `change`
    /// (once per transaction and kind, however often it is called).
    pub(super) async fn notify(tx: &mut Tx<B>, change: Change) -> Result<()> {
        if B::NOTIFIES {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::CHANGES_CHANNEL)
                .bind(change.payload())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    fn revocation_from_row(row: &Row<B>) -> Result<RevocationRow> {
        let kind: String = row.try_get("kind")?;
        let action: String = row.try_get("action")?;
        Ok(RevocationRow {
            seq: row.try_get("seq")?,
            kind: match kind.as_str() {
                "agent" => RevocationKind::Agent,
                "token" => RevocationKind::Token,
                "task" => RevocationKind::Task,
                "key" => RevocationKind::Key,
                "policy" => RevocationKind::Policy,
                _ => return Err(StoreError::Corrupt(format!("revocation kind {kind}"))),
            },
            subject: row.try_get("subject")?,
            action: match action.as_str() {
                "revoke" => RevocationAction::Revoke,
                "restore" => RevocationAction::Restore,
                _ => return Err(StoreError::Corrupt(format!("revocation action {action}"))),
            },
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

/// The PostgreSQL advisory lock key ("agentrev" in ASCII) that orders
/// revocations against exchanges.
const REVOCATION_ORDER_LOCK: i64 = 0x6167_656e_7472_6576;

/// Which side of the exchange-versus-revocation race a transaction is on.
///
/// A revocation revokes the tokens exchanged from what it revokes, which it
/// finds by reading `issued_tokens`; an exchange checks, before it commits,
/// that its subject token is not revoked. On PostgreSQL both run at once
/// under READ COMMITTED, so each could miss the other's uncommitted rows and
/// leave a child token of a revoked token unrevoked. Revoking transactions
/// therefore hold an advisory lock exclusively, taken before their first
/// read of issued tokens, and exchanging ones hold it shared from their
/// first statement: whichever commits second sees the first one's rows.
/// Exchanges do not wait for each other.
#[derive(Debug, Clone, Copy)]
pub(super) enum RevocationOrder {
    /// The transaction publishes revocations.
    Revoking,
    /// The transaction records exchanged tokens.
    Exchanging,
}
