//! The embedded backend: one SQLite file, and the in-process writer queue in
//! front of its one write lock.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agentauth_core::AuditKey;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::sql::{Backend, GroupCommit, ReadCache, RowsAffected, STATEMENT_CACHE_CAPACITY, Tx};

/// The embedded store: one SQLite file, WAL mode, no set-up.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// SQLite has one writer; queueing writers here, instead of in SQLite's
    /// busy handler (which sleeps in steps of up to 100 ms), keeps tail latency low.
    writer: Arc<Mutex<()>>,
    audit_key: Arc<OnceLock<AuditKey>>,
    /// Token issuances waiting to be committed together.
    group_commit: GroupCommit,
    /// The agents and revocation answers token requests and introspection
    /// read, in memory: this process is the file's only writer.
    read_cache: Arc<ReadCache>,
    /// The background WAL checkpoints.
    checkpoints: Arc<Checkpoints>,
}

/// How often, at most, a checkpoint starts behind the issuance writer.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Checkpoints that move the WAL's committed pages into the database file
/// beside the issuance writer rather than in it: SQLite's own automatic
/// checkpoint runs inside the commit that crosses its threshold, with its
/// fsyncs, and every token of that batch waits for it. A passive checkpoint
/// never takes the write lock; with the WAL kept short this way the
/// automatic one, left on as a backstop at 10,000 pages, seldom fires.
#[derive(Debug, Default)]
struct Checkpoints {
    /// One checkpoint at a time.
    running: AtomicBool,
    /// When the last one started.
    last: std::sync::Mutex<Option<Instant>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> crate::Result<Self> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .statement_cache_capacity(STATEMENT_CACHE_CAPACITY)
            // The background checkpoints keep the WAL short; SQLite's own,
            // inside a commit, is the backstop for a WAL they let grow.
            .pragma("wal_autocheckpoint", "10000");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .before_acquire(|conn, _| Box::pin(healthy(conn)))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            writer: Arc::default(),
            audit_key: Arc::default(),
            group_commit: GroupCommit::default(),
            read_cache: Arc::default(),
            checkpoints: Arc::default(),
        })
    }
}

/// Whether a pooled connection may be handed out again. A `COMMIT` that
/// fails because the disk is full (SQLite then rolls the transaction back
/// itself) leaves sqlx counting an open transaction that no `ROLLBACK` can
/// end, and every later `BEGIN` on that connection would fail: such a
/// connection is closed instead (the pool opens a fresh one). A rollback
/// queued by a transaction just dropped is let through first.
async fn healthy(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection as _;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

impl Backend for SqliteStore {
    type Db = Sqlite;
    /// This process's turn to write: other writers wait for it here.
    type WriterTurn = OwnedMutexGuard<()>;
    /// `BEGIN IMMEDIATE` takes the database's one write lock up front.
    const LOCKS_ROWS: bool = false;
    const WRITER_THREAD: bool = true;
    /// The only writer of its file: nobody else to tell.
    const NOTIFIES: bool = false;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Waits for this process's turn to write, then starts a transaction
    /// holding SQLite's write lock from the start (`BEGIN IMMEDIATE`), so two
    /// writers never deadlock upgrading a read lock.
    async fn begin(&self) -> crate::Result<Tx<Self>> {
        let turn = self.writer.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // This transaction holds the write lock: an abandoned write's commit,
        // if any, is over.
        self.read_cache.settle();
        Ok(Tx::new(self, tx, turn))
    }

    fn audit_key(&self) -> &Arc<OnceLock<AuditKey>> {
        &self.audit_key
    }

    fn group_commit(&self) -> &GroupCommit {
        &self.group_commit
    }

    fn read_cache(&self) -> Option<&ReadCache> {
        Some(&self.read_cache)
    }

    fn after_batch(&self) {
        let checkpoints = &self.checkpoints;
        if checkpoints.running.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut last = checkpoints
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < CHECKPOINT_EVERY) {
                checkpoints.running.store(false, Ordering::Release);
                return;
            }
            *last = Some(Instant::now());
        }
        let (pool, checkpoints) = (self.pool.clone(), self.checkpoints.clone());
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                // The automatic checkpoint is still there; nothing is lost.
                tracing::warn!(error = %e, "background WAL checkpoint failed");
            }
            checkpoints.running.store(false, Ordering::Release);
        });
    }
}

impl RowsAffected for SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        SqliteQueryResult::rows_affected(self)
    }
}

#[cfg(test)]
mod tests {
    use agentauth_core::{AuditKey, AuditKind, Decision, verify_chain};

    use crate::{AuditFilter, Store, StoreError};

    fn event(n: i64) -> agentauth_core::AuditEvent {
        agentauth_core::AuditEvent {
            time_ms: n,
            kind: AuditKind::RequestAllowed,
            actor: "a".into(),
            subject: format!("s{n}"),
            audience: String::new(),
            scope: String::new(),
            decision: Decision::Allow,
            reason: String::new(),
            request_id: String::new(),
            txn: String::new(),
            chain: String::new(),
            purpose: String::new(),
            reported: false,
        }
    }

    async fn verify(store: &dyn Store, key: &AuditKey) -> Result<i64, agentauth_core::ChainBreak> {
        let records = store
            .audit_records(&AuditFilter {
                limit: 1000,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let (seq, hash) = store.audit_head().await.unwrap();
        verify_chain(&records, seq, &hash, key)
    }

    #[tokio::test]
    async fn no_audit_record_is_written_without_the_key_and_old_records_are_sealed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let store = crate::open(path.to_str().unwrap()).await.unwrap();
        let refused = store.append_audit(&[event(1)]).await.unwrap_err();
        assert!(matches!(refused, StoreError::AuditKeyMissing), "{refused}");
        assert_eq!(
            store.audit_head().await.unwrap().0,
            0,
            "nothing half-written"
        );

        let key = AuditKey::derive(&[1u8; 32]);
        store.set_audit_key(key.clone());
        store.append_audit(&[event(1), event(2)]).await.unwrap();
        assert_eq!(verify(&*store, &key).await, Ok(2));

        // Records from before keyed audit (an upgraded database) have no code
        // and fail verification until the authority seals them at start.
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let strip = |sql: &'static str| {
            let pool = pool.clone();
            async move { sqlx::query(sql).execute(&pool).await.unwrap() }
        };
        strip("UPDATE audit_log SET mac = ''").await;
        assert_eq!(verify(&*store, &key).await.unwrap_err().seq, 1);
        let mut sealed = event(0);
        sealed.kind = AuditKind::AuditSealed;
        assert_eq!(store.seal_unkeyed_audit(&sealed).await.unwrap(), 2);
        assert_eq!(store.seal_unkeyed_audit(&sealed).await.unwrap(), 0);
        assert_eq!(
            verify(&*store, &key).await,
            Ok(3),
            "two sealed, one seal record"
        );
        assert_eq!(
            verify(&*store, &AuditKey::derive(&[2u8; 32]))
                .await
                .unwrap_err()
                .seq,
            1
        );

        // Once a record is keyed, a stripped code is never sealed again.
        strip("UPDATE audit_log SET mac = '' WHERE seq = 2").await;
        assert_eq!(store.seal_unkeyed_audit(&sealed).await.unwrap(), 0);
        assert_eq!(verify(&*store, &key).await.unwrap_err().seq, 2);
        // Stripping every code gets the log sealed again, which shows.
        strip("UPDATE audit_log SET mac = ''").await;
        assert_eq!(store.seal_unkeyed_audit(&sealed).await.unwrap(), 3);
        let second = verify(&*store, &key).await.unwrap_err();
        assert_eq!(second.seq, 4);
        assert!(second.reason.contains("sealed a second time"), "{second}");
    }
}
