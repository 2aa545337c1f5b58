//! Issued tokens and the single use of the client assertions they were
//! issued for; revoking a token revokes every token exchanged from it.

use agentauth_core::{AuditEvent, TaskId};
use sqlx::{ColumnIndex, Executor, Row as _};

use super::{Backend, Column, Conn, Param, RevocationOrder, Row, RowsAffected as _, Sql, Tx};
use crate::{
    ApprovalStatus, IssuedToken, Result, RevocationAction, RevocationKind, StoreError,
    UsedAssertion,
};

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
    pub(super) async fn consume_assertion(&self, assertion: &UsedAssertion) -> Result<()> {
        let mut tx = self.0.begin().await?;
        Self::consume(&mut tx, assertion).await?;
        tx.commit().await
    }

    /// Records one issued token in a transaction of its own (see
    /// [`crate::Store::issue_token`]); the group commit's path for tokens
    /// that use up an approval.
    pub(super) async fn issue_alone(
        &self,
        assertion: &UsedAssertion,
        token: &IssuedToken,
        approval: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.0.begin().await?;
        if token.parent_jti.is_some() {
            Self::order(&mut tx, RevocationOrder::Exchanging).await?;
        }
        Self::consume(&mut tx, assertion).await?;
        // The approval is used up by this token and no other: a second
        // request racing this one waits for the row and then finds it used.
        if let Some(id) = approval {
            let done = sqlx::query(
                "UPDATE approvals SET status = $3 WHERE id = $1 AND status = $4 AND expires_at > $2",
            )
            .bind(id)
            .bind(token.issued_at)
            .bind(ApprovalStatus::Used.as_str())
            .bind(ApprovalStatus::Approved.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Stale(
                    "the approval is not approved, already used or expired".into(),
                ));
            }
        }
        sqlx::query(
            "INSERT INTO issued_tokens (jti, client_id, subject, audience, scope, issued_at, expires_at, \
             parent_jti, txn, auth_jkt, cnf_jkt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&token.jti)
        .bind(token.client_id.as_str())
        .bind(token.subject.as_str())
        .bind(token.audience.as_str())
        .bind(token.scope.to_string())
        .bind(token.issued_at)
        .bind(token.expires_at)
        .bind(token.parent_jti.as_deref())
        .bind(token.txn.as_ref().map(TaskId::as_str))
        .bind(token.auth_jkt.as_ref().map(|k| k.0.as_str()))
        .bind(token.cnf_jkt.as_ref().map(|k| k.0.as_str()))
        .execute(&mut *tx)
        .await?;
        // A task is started by a token of its own: an exchanged token only
        // continues the task of its subject token.
        if let (None, Some(txn)) = (&token.parent_jti, &token.txn) {
            Self::start_task(&mut tx, txn.as_str(), &token.client_id, token.issued_at).await?;
        }
        // A parent revoked while this exchange was under way must not
        // leave an unrevoked child behind.
        if let Some(parent) = &token.parent_jti {
            let revoked = sqlx::query(
                "SELECT 1 AS one FROM revocations WHERE kind = 'token' AND subject = $1 LIMIT 1",
            )
            .bind(parent)
            .fetch_optional(&mut *tx)
            .await?;
            if revoked.is_some() {
                return Err(StoreError::SubjectRevoked);
            }
        }
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await
    }

    pub(super) async fn token_revoked(&self, jti: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM revocations WHERE kind = 'token' AND subject = $1 LIMIT 1",
        )
        .bind(jti)
        .fetch_optional(self.0.pool())
        .await?;
        Ok(row.is_some())
    }

    pub(super) async fn revoke_token(
        &self,
        jti: &str,
        expires_at: i64,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let now = audit.time_ms / 1000;
        Self::publish(
            &mut tx,
            RevocationKind::Token,
            jti,
            RevocationAction::Revoke,
            now,
            Some(expires_at),
        )
        .await?;
        Self::revoke_derived(&mut tx, Derived::ExchangedFrom, jti, now).await?;
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await
    }

    pub(super) async fn purge_expired(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM used_assertions WHERE expires_at < $1")
            .bind(now)
            .execute(self.0.pool())
            .await?;
        let agents = self.purge_expired_agents(now).await?;
        Ok(done.rows_affected() + agents)
    }

    /// Publishes a revocation, inside `tx`, of every unexpired token that
    /// `roots` selects for `subject` and every token exchanged from them
    /// (recursively), skipping tokens already revoked.
    pub(super) async fn revoke_derived(
        tx: &mut Tx<B>,
        roots: Derived,
        subject: &str,
        now: i64,
    ) -> Result<()> {
        Self::order(tx, RevocationOrder::Revoking).await?;
        let rows = sqlx::query(roots.sql())
            .bind(subject)
            .bind(now)
            .fetch_all(&mut **tx)
            .await?;
        for row in &rows {
            let jti: String = row.try_get("jti")?;
            let expires_at: i64 = row.try_get("expires_at")?;
            Self::publish(
                tx,
                RevocationKind::Token,
                &jti,
                RevocationAction::Revoke,
                now,
                Some(expires_at),
            )
            .await?;
        }
        Ok(())
    }

    /// Marks a client assertion used inside `tx`.
    async fn consume(tx: &mut Tx<B>, assertion: &UsedAssertion) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO used_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(&assertion.client_id)
        .bind(&assertion.jti)
        .bind(assertion.expires_at)
        .execute(&mut **tx)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if StoreError::is_unique_violation(&e) => Err(StoreError::ReplayedAssertion),
            Err(e) => Err(e.into()),
        }
    }
}

/// Which issued tokens a revocation starts from; everything exchanged from
/// them is revoked with them.
#[derive(Debug, Clone, Copy)]
pub(super) enum Derived {
    /// The tokens exchanged from one token (`$1` = its `jti`).
    ExchangedFrom,
    /// The tokens a key authenticated or binds (`$1` = its thumbprint).
    Key,
    /// The tokens that name an agent as presenter, subject or audience
    /// (`$1` = its SPIFFE ID): with their descendants, every token whose
    /// chain names it.
    Agent,
}

/// The query revoking the tokens `$roots` selects and everything exchanged
/// from them: their `jti` and expiry, if unexpired at `$2` and not yet revoked.
macro_rules! derived_from {
    ($roots:literal) => {
        concat!(
            "WITH RECURSIVE derived(jti) AS (",
            $roots,
            " UNION SELECT t.jti FROM issued_tokens t JOIN derived d ON t.parent_jti = d.jti) \
             SELECT t.jti, t.expires_at FROM issued_tokens t JOIN derived d ON t.jti = d.jti \
             WHERE t.expires_at >= $2 AND NOT EXISTS ( \
                 SELECT 1 FROM revocations r WHERE r.kind = 'token' AND r.subject = t.jti)"
        )
    };
}

impl Derived {
    fn sql(self) -> &'static str {
        match self {
            Self::ExchangedFrom => {
                derived_from!("SELECT jti FROM issued_tokens WHERE parent_jti = $1")
            }
            Self::Key => {
                derived_from!("SELECT jti FROM issued_tokens WHERE auth_jkt = $1 OR cnf_jkt = $1")
            }
            Self::Agent => derived_from!(
                "SELECT jti FROM issued_tokens \
                 WHERE client_id = $1 OR subject = $1 OR audience = $1"
            ),
        }
    }
}
