//! The hash-chained audit log: appending inside a write's transaction, and
//! reading records back.

use agentauth_core::{AuditEvent, AuditKind, AuditRecord, Decision, chain_hash};
use sqlx::{ColumnIndex, Executor, Row as _};

use super::backend::ForUpdate;
use super::bulk::{Bulk, runs};
use super::{Backend, Column, Conn, Param, Row, Sql, Tx};
use crate::{AuditFilter, Result, StoreError};

/// The chain head, read to extend the chain.
static HEAD: ForUpdate = ForUpdate::new("SELECT seq, hash FROM audit_head WHERE id = 1");

/// Audit records, many per statement.
static RECORDS: Bulk = Bulk::new(
    "INSERT INTO audit_log (seq, time_ms, kind, actor, subject, audience, scope, decision, \
     reason, request_id, prev_hash, hash, txn, chain, purpose, mac, reported) VALUES ",
    17,
    "",
);

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
    pub(super) async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        let mut tx = self.0.begin().await?;
        Self::append(&mut tx, events).await?;
        tx.commit().await
    }

    pub(super) async fn seal_unkeyed_audit(&self, audit: &AuditEvent) -> Result<u64> {
        let mut tx = self.0.begin().await?;
        let key = tx.audit_key()?.clone();
        let keyed = sqlx::query("SELECT seq FROM audit_log WHERE mac <> '' LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        if keyed.is_some() {
            return Ok(0);
        }
        let rows = sqlx::query("SELECT seq, hash FROM audit_log WHERE mac = '' ORDER BY seq")
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let hash: String = row.try_get("hash")?;
            sqlx::query("UPDATE audit_log SET mac = $1 WHERE seq = $2")
                .bind(key.mac(&hash))
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        if !rows.is_empty() {
            let mut sealed = audit.clone();
            sealed.reason = format!(
                "{} records written before records were keyed were authenticated",
                rows.len()
            );
            Self::append(&mut tx, std::slice::from_ref(&sealed)).await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    pub(super) async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE seq > $1 \
             AND ($2 IS NULL OR actor = $2 OR subject = $2 OR audience = $2) \
             AND ($3 IS NULL OR kind = $3) ORDER BY seq LIMIT $4",
        )
        .bind(filter.since)
        .bind(filter.agent.as_deref())
        .bind(filter.kind.map(AuditKind::as_str))
        .bind(filter.limit)
        .fetch_all(self.0.pool())
        .await?;
        rows.iter().map(Self::audit_from_row).collect()
    }

    pub(super) async fn audit_head(&self) -> Result<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(self.0.pool())
            .await?;
        Ok((row.try_get("seq")?, row.try_get("hash")?))
    }

    /// Appends `events` to the chain inside `tx`. The head row is read
    /// under the transaction's write lock, so concurrent appends serialise;
    /// the records go in multi-row statements ([`super::bulk`]).
    pub(super) async fn append(tx: &mut Tx<B>, events: &[AuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let key = tx.audit_key()?.clone();
        let head = sqlx::query(HEAD.sql::<B>()).fetch_one(&mut **tx).await?;
        let mut seq: i64 = head.try_get("seq")?;
        let mut prev: String = head.try_get("hash")?;
        // (seq, prev_hash, hash, mac) of each event, in order.
        let mut links = Vec::with_capacity(events.len());
        for event in events {
            seq += 1;
            let hash = chain_hash(&prev, seq, event);
            let mac = key.mac(&hash);
            links.push((seq, std::mem::replace(&mut prev, hash.clone()), hash, mac));
        }
        for run in runs(events.len()) {
            let mut insert = sqlx::query(RECORDS.sql(run.len()));
            for (event, (seq, prev_hash, hash, mac)) in events[run.clone()].iter().zip(&links[run])
            {
                insert = insert
                    .bind(*seq)
                    .bind(event.time_ms)
                    .bind(event.kind.as_str())
                    .bind(event.actor.as_str())
                    .bind(event.subject.as_str())
                    .bind(event.audience.as_str())
                    .bind(event.scope.as_str())
                    .bind(event.decision.as_str())
                    .bind(event.reason.as_str())
                    .bind(event.request_id.as_str())
                    .bind(prev_hash.as_str())
                    .bind(hash.as_str())
                    .bind(event.txn.as_str())
                    .bind(event.chain.as_str())
                    .bind(event.purpose.as_str())
                    .bind(mac.as_str())
                    .bind(i64::from(event.reported));
            }
            insert.execute(&mut **tx).await?;
        }
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(&prev)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub(super) fn audit_from_row(row: &Row<B>) -> Result<AuditRecord> {
        let decision: String = row.try_get("decision")?;
        let kind: String = row.try_get("kind")?;
        Ok(AuditRecord {
            seq: row.try_get("seq")?,
            event: AuditEvent {
                time_ms: row.try_get("time_ms")?,
                kind: AuditKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("audit kind {kind}")))?,
                actor: row.try_get("actor")?,
                subject: row.try_get("subject")?,
                audience: row.try_get("audience")?,
                scope: row.try_get("scope")?,
                decision: Decision::parse(&decision)
                    .ok_or_else(|| StoreError::Corrupt(format!("audit decision {decision}")))?,
                reason: row.try_get("reason")?,
                request_id: row.try_get("request_id")?,
                txn: row.try_get("txn")?,
                chain: row.try_get("chain")?,
                purpose: row.try_get("purpose")?,
                reported: row.try_get::<i64, _>("reported")? != 0,
            },
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
            mac: row.try_get("mac")?,
        })
    }
}
