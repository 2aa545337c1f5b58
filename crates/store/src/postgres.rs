//! The shared backend: a PostgreSQL database that several replicas write to
//! at once, with rows locked where a transaction reads what it changes.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use agentauth_core::AuditKey;
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult};

use crate::sql::{Backend, GroupCommit, RowsAffected, STATEMENT_CACHE_CAPACITY, Tx};

/// Longest wait for a pooled connection.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The shared store: a PostgreSQL database that several authority replicas use.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    audit_key: Arc<OnceLock<AuditKey>>,
    /// Token issuances waiting to be committed together.
    group_commit: GroupCommit,
}

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn connect(url: &str) -> crate::Result<Self> {
        let options =
            PgConnectOptions::from_str(url)?.statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        let pool = PgPoolOptions::new()
            .max_connections(10)
            // While PostgreSQL is out of reach a request waits this long for
            // a connection, then fails as unavailable (503, retry) instead
            // of hanging until the request timeout.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            audit_key: Arc::default(),
            group_commit: GroupCommit::default(),
        })
    }
}

impl Backend for PgStore {
    type Db = Postgres;
    /// PostgreSQL queues writers itself, on the rows they lock.
    type WriterTurn = ();
    /// Replicas write concurrently: rows read to be changed are locked.
    const LOCKS_ROWS: bool = true;
    const WRITER_THREAD: bool = false;
    const NOTIFIES: bool = true;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> crate::Result<Tx<Self>> {
        Ok(Tx::new(self, self.pool.begin().await?, ()))
    }

    fn audit_key(&self) -> &Arc<OnceLock<AuditKey>> {
        &self.audit_key
    }

    fn group_commit(&self) -> &GroupCommit {
        &self.group_commit
    }

    /// One connection of its own `LISTEN`s on [`crate::REVOCATION_CHANNEL`];
    /// each notification (and each reconnection, which may have missed
    /// some) wakes the receiver. Its task ends when the receiver is dropped.
    async fn revocation_signals(&self) -> crate::Result<Option<tokio::sync::mpsc::Receiver<()>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(crate::REVOCATION_CHANNEL).await?;
        let (wake, woken) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = wake.closed() => return,
                    got = listener.try_recv() => {
                        // A full channel already holds a wake-up: enough.
                        let _ = wake.try_send(());
                        match got {
                            Ok(Some(_)) => {}
                            // The connection was lost; the next call reconnects.
                            Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                            Err(e) => {
                                tracing::warn!(error = %e, "listening for revocations failed; retrying");
                                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
            }
        });
        Ok(Some(woken))
    }

    /// Replicas share the database, and nothing tells this one of another's
    /// writes yet: every read goes to PostgreSQL.
    fn read_cache(&self) -> Option<&crate::sql::ReadCache> {
        None
    }
}

impl RowsAffected for PgQueryResult {
    fn rows_affected(&self) -> u64 {
        PgQueryResult::rows_affected(self)
    }
}
