//! Group commit for token issuance: every issuance waits in one bounded
//! queue, and one writer records all the issuances pending at that moment in
//! one transaction, with one commit, before any of them is answered.
//!
//! A token costs its requester nothing in durability: its used assertion,
//! the token record, the task it starts and its hash-chained audit record
//! are committed before [`crate::Store::issue_token`] returns, as when each
//! token had a transaction of its own. What changes is the cost: a batch is
//! written with a fixed number of multi-row statements ([`super::bulk`]), so
//! the database's round trips, its write lock and its commit are shared by
//! the whole batch. While the writer commits one batch the next gathers.
//!
//! Each issuance keeps its own outcome: a replayed assertion, a task
//! started by another agent or a subject token revoked meanwhile refuses
//! that issuance alone, and nothing of it stays written. An issuance that
//! uses up an approval (rare: a person decided it) is recorded in a
//! transaction of its own after the batch.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use agentauth_core::{AuditEvent, TaskId};
use sqlx::{ColumnIndex, Executor, Row as _};
use tokio::sync::{mpsc, oneshot};

use super::bulk::{Bulk, runs};
use super::{Backend, Column, Conn, Param, RevocationOrder, Row, Sql, Tx};
use crate::{IssuedToken, Result, StoreError, UsedAssertion};

/// How many issuances may wait for the writer; one more is refused with
/// [`StoreError::Overloaded`] rather than queued without bound.
pub(crate) const QUEUE_BOUND: usize = 4096;

/// The most issuances one transaction records.
const MAX_BATCH: usize = 256;

/// One token to record, and where its outcome goes.
pub(crate) struct Issuance {
    pub(crate) assertion: UsedAssertion,
    pub(crate) token: IssuedToken,
    pub(crate) approval: Option<String>,
    pub(crate) audit: AuditEvent,
    pub(crate) done: oneshot::Sender<Result<()>>,
}

/// The queue in front of a store's writer, which starts on first use.
///
/// A copy of a store starts its own writer: the copy the writer holds never
/// uses its queue, so the writer stops once every other handle is gone.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: OnceLock<mpsc::Sender<Issuance>>,
}

impl Clone for GroupCommit {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("started", &self.queue.get().is_some())
            .finish()
    }
}

/// Used assertions, many per statement; the rows that come back are the ones
/// not used before.
static ASSERTIONS: Bulk = Bulk::new(
    "INSERT INTO used_assertions (client_id, jti, expires_at) VALUES ",
    3,
    " ON CONFLICT (client_id, jti) DO NOTHING RETURNING client_id, jti",
);

/// Tasks started, many per statement; the rows that come back were new.
static TASKS: Bulk = Bulk::new(
    "INSERT INTO tasks (txn, owner, created_at) VALUES ",
    3,
    " ON CONFLICT (txn) DO NOTHING RETURNING txn",
);

/// Issued tokens, many per statement.
static TOKENS: Bulk = Bulk::new(
    "INSERT INTO issued_tokens (jti, client_id, subject, audience, scope, issued_at, \
     expires_at, parent_jti, txn, auth_jkt, cnf_jkt) VALUES ",
    11,
    "",
);

/// Which of the listed subject tokens have been revoked.
static REVOKED_PARENTS: Bulk = Bulk::new(
    "SELECT subject FROM revocations WHERE kind = 'token' AND subject IN (",
    1,
    ")",
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
    /// Queues a token for the writer and waits until it is committed or refused.
    pub(super) async fn issue_token(
        &self,
        assertion: &UsedAssertion,
        token: &IssuedToken,
        approval: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<()> {
        let queue = self.0.group_commit().queue.get_or_init(|| {
            let (queue, pending) = mpsc::channel(QUEUE_BOUND);
            let writer = write(self.0.clone(), pending);
            if B::WRITER_THREAD {
                on_own_thread(writer);
            } else {
                tokio::spawn(writer);
            }
            queue
        });
        let (done, outcome) = oneshot::channel();
        let issuance = Issuance {
            assertion: assertion.clone(),
            token: token.clone(),
            approval: approval.map(str::to_owned),
            audit: audit.clone(),
            done,
        };
        queue.try_send(issuance).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => {
                StoreError::Unavailable("the store's writer has stopped".into())
            }
        })?;
        outcome.await.map_err(|_| {
            StoreError::Unavailable("the store's writer stopped before recording the token".into())
        })?
    }

    /// Records `batch` and returns each issuance's outcome, in order: the
    /// ones without an approval in one transaction, each one with an
    /// approval in its own.
    async fn record(&self, batch: &[Issuance]) -> Vec<Result<()>> {
        let plain: Vec<&Issuance> = batch.iter().filter(|i| i.approval.is_none()).collect();
        // A shared transaction the database rejects as a whole (one record
        // it refuses) is rolled back, and each of its issuances is tried
        // again alone, so one cannot sink the others. One that loses the
        // database instead may have committed before the answer was lost:
        // trying again would find its assertions used and refuse tokens
        // that were recorded, so each requester hears that the database is
        // unavailable, which is true either way.
        let mut lost = None;
        let mut together = match self.record_together(&plain).await {
            Ok(outcomes) => Some(outcomes.into_iter()),
            Err(StoreError::Unavailable(why)) => {
                lost = Some(why);
                None
            }
            Err(_) => None,
        };
        let mut all = Vec::with_capacity(batch.len());
        for issuance in batch {
            let shared = match (&issuance.approval, together.as_mut(), &lost) {
                (None, Some(outcomes), _) => outcomes.next(),
                (None, None, Some(why)) => Some(Err(StoreError::Unavailable(why.clone()))),
                _ => None,
            };
            all.push(match shared {
                Some(outcome) => outcome,
                None => {
                    self.issue_alone(
                        &issuance.assertion,
                        &issuance.token,
                        issuance.approval.as_deref(),
                        &issuance.audit,
                    )
                    .await
                }
            });
        }
        all
    }

    /// Records every issuance of `batch` that passes its checks in one
    /// transaction; returns each one's outcome, or the error that rolled
    /// the whole transaction back.
    async fn record_together(&self, batch: &[&Issuance]) -> Result<Vec<Result<()>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut refused: Vec<Option<StoreError>> = batch.iter().map(|_| None).collect();
        // The second use of an assertion within the batch is a replay.
        let mut seen = HashSet::with_capacity(batch.len());
        for (i, issuance) in batch.iter().enumerate() {
            let a = &issuance.assertion;
            if !seen.insert((a.client_id.as_str(), a.jti.as_str())) {
                refused[i] = Some(StoreError::ReplayedAssertion);
            }
        }
        let mut tx = self.0.begin().await?;
        if batch.iter().any(|b| b.token.parent_jti.is_some()) {
            Self::order(&mut tx, RevocationOrder::Exchanging).await?;
        }
        let live = alive(&refused);
        let fresh = Self::use_assertions(&mut tx, batch, &live).await?;
        for &i in &live {
            let a = &batch[i].assertion;
            if !fresh.contains(&(a.client_id.clone(), a.jti.clone())) {
                refused[i] = Some(StoreError::ReplayedAssertion);
            }
        }
        // From here on a refused issuance has used its assertion in this
        // transaction, and gives it back.
        let assertion_used = alive(&refused);
        Self::start_tasks(&mut tx, batch, &mut refused).await?;
        Self::check_parents(&mut tx, batch, &mut refused).await?;
        for &i in &assertion_used {
            if refused[i].is_some() {
                let a = &batch[i].assertion;
                sqlx::query("DELETE FROM used_assertions WHERE client_id = $1 AND jti = $2")
                    .bind(a.client_id.as_str())
                    .bind(a.jti.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let live = alive(&refused);
        Self::insert_tokens(&mut tx, batch, &live).await?;
        let events: Vec<AuditEvent> = live.iter().map(|&i| batch[i].audit.clone()).collect();
        Self::append(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(refused
            .into_iter()
            .map(|r| match r {
                Some(e) => Err(e),
                None => Ok(()),
            })
            .collect())
    }

    /// Marks the assertions of `live` used; returns those that were not
    /// used before, as (client, jti).
    async fn use_assertions(
        tx: &mut Tx<B>,
        batch: &[&Issuance],
        live: &[usize],
    ) -> Result<HashSet<(String, String)>> {
        let mut fresh = HashSet::with_capacity(live.len());
        for run in runs(live.len()) {
            let mut insert = sqlx::query(ASSERTIONS.sql(run.len()));
            for &i in &live[run] {
                let a = &batch[i].assertion;
                insert = insert
                    .bind(a.client_id.as_str())
                    .bind(a.jti.as_str())
                    .bind(a.expires_at);
            }
            for row in insert.fetch_all(&mut **tx).await? {
                fresh.insert((row.try_get("client_id")?, row.try_get("jti")?));
            }
        }
        Ok(fresh)
    }

    /// Starts the task of every live token that starts one (a token that is
    /// not exchanged and carries a `txn`), and refuses each whose task another
    /// agent started, here or before.
    async fn start_tasks(
        tx: &mut Tx<B>,
        batch: &[&Issuance],
        refused: &mut [Option<StoreError>],
    ) -> Result<()> {
        // The first live token naming a task starts it, if it is new.
        let mut first: Vec<usize> = Vec::new();
        let mut named = HashSet::new();
        for i in alive(refused) {
            if let Some(txn) = starts_task(batch[i])
                && named.insert(txn)
            {
                first.push(i);
            }
        }
        let mut owners: HashMap<String, String> = HashMap::with_capacity(first.len());
        for run in runs(first.len()) {
            let mut insert = sqlx::query(TASKS.sql(run.len()));
            for &i in &first[run.clone()] {
                let token = &batch[i].token;
                insert = insert
                    .bind(starts_task(batch[i]).unwrap_or_default())
                    .bind(token.client_id.as_str())
                    .bind(token.issued_at);
            }
            let started: HashSet<String> = insert
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|row| row.try_get("txn"))
                .collect::<std::result::Result<_, _>>()?;
            for &i in &first[run] {
                let txn = starts_task(batch[i]).unwrap_or_default();
                if started.contains(txn) {
                    owners.insert(txn.to_owned(), batch[i].token.client_id.to_string());
                }
            }
        }
        for &i in &first {
            let txn = starts_task(batch[i]).unwrap_or_default();
            if !owners.contains_key(txn) {
                let row = sqlx::query("SELECT owner FROM tasks WHERE txn = $1")
                    .bind(txn)
                    .fetch_one(&mut **tx)
                    .await?;
                owners.insert(txn.to_owned(), row.try_get("owner")?);
            }
        }
        for i in alive(refused) {
            if let Some(txn) = starts_task(batch[i])
                && owners.get(txn).map(String::as_str) != Some(batch[i].token.client_id.as_str())
            {
                refused[i] = Some(StoreError::TaskOfAnother(txn.chars().take(128).collect()));
            }
        }
        Ok(())
    }

    /// Refuses every live exchanged token whose subject token has been
    /// revoked, so a revocation committed while an exchange was under way
    /// never leaves an unrevoked child behind.
    async fn check_parents(
        tx: &mut Tx<B>,
        batch: &[&Issuance],
        refused: &mut [Option<StoreError>],
    ) -> Result<()> {
        let exchanged: Vec<usize> = alive(refused)
            .into_iter()
            .filter(|&i| batch[i].token.parent_jti.is_some())
            .collect();
        let mut revoked = HashSet::new();
        for run in runs(exchanged.len()) {
            let mut select = sqlx::query(REVOKED_PARENTS.sql(run.len()));
            for &i in &exchanged[run] {
                select = select.bind(batch[i].token.parent_jti.as_deref().unwrap_or_default());
            }
            for row in select.fetch_all(&mut **tx).await? {
                revoked.insert(row.try_get::<String, _>("subject")?);
            }
        }
        for i in exchanged {
            if batch[i]
                .token
                .parent_jti
                .as_ref()
                .is_some_and(|p| revoked.contains(p))
            {
                refused[i] = Some(StoreError::SubjectRevoked);
            }
        }
        Ok(())
    }

    /// Inserts the token records of `live`.
    async fn insert_tokens(tx: &mut Tx<B>, batch: &[&Issuance], live: &[usize]) -> Result<()> {
        let scopes: Vec<String> = live
            .iter()
            .map(|&i| batch[i].token.scope.to_string())
            .collect();
        for run in runs(live.len()) {
            let mut insert = sqlx::query(TOKENS.sql(run.len()));
            for (&i, scope) in live[run.clone()].iter().zip(&scopes[run]) {
                let t = &batch[i].token;
                insert = insert
                    .bind(t.jti.as_str())
                    .bind(t.client_id.as_str())
                    .bind(t.subject.as_str())
                    .bind(t.audience.as_str())
                    .bind(scope.as_str())
                    .bind(t.issued_at)
                    .bind(t.expires_at)
                    .bind(t.parent_jti.as_deref())
                    .bind(t.txn.as_ref().map(TaskId::as_str))
                    .bind(t.auth_jkt.as_ref().map(|k| k.0.as_str()))
                    .bind(t.cnf_jkt.as_ref().map(|k| k.0.as_str()));
            }
            insert.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// The task `issuance` starts: the one its token carries, unless the token
/// is exchanged (an exchanged token joins its subject token's task).
fn starts_task(issuance: &Issuance) -> Option<&str> {
    match (&issuance.token.parent_jti, &issuance.token.txn) {
        (None, Some(txn)) => Some(txn.as_str()),
        _ => None,
    }
}

/// The positions not refused yet.
fn alive(refused: &[Option<StoreError>]) -> Vec<usize> {
    (0..refused.len())
        .filter(|&i| refused[i].is_none())
        .collect()
}

/// The writer: takes every issuance waiting (up to [`MAX_BATCH`]), records
/// them, answers each, and goes again; stops when every queue handle is gone.
/// Runs the writer on a thread of its own: each of a batch's statements is a
/// hop to the database's worker thread and back, and on the shared runtime
/// every hop back waits in line behind the requests being served, which made
/// a batch take milliseconds of mostly waiting. Should the thread or its
/// runtime not start, the writer is dropped, which closes the queue:
/// issuances are then refused as unavailable, never left waiting.
fn on_own_thread(writer: impl Future<Output = ()> + Send + 'static) {
    let started = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(writer),
                Err(e) => tracing::error!(error = %e, "the store's writer could not start"),
            }
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "the store's writer thread could not start");
    }
}

async fn write<B>(store: B, mut pending: mpsc::Receiver<Issuance>)
where
    B: Backend,
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    for<'q> &'q str: Param<'q, B::Db> + ColumnIndex<Row<B>>,
    for<'q> Option<&'q str>: Param<'q, B::Db>,
    String: Column<B::Db>,
    i64: Column<B::Db>,
    Option<i64>: Column<B::Db>,
{
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcomes = Sql(&store).record(&batch).await;
        for (issuance, outcome) in batch.drain(..).zip(outcomes) {
            // The requester may have gone; the token stays recorded.
            let _ = issuance.done.send(outcome);
        }
        store.after_batch();
    }
}
