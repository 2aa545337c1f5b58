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

    /// One connection of its own `LISTEN`s on [`crate::CHANGES_CHANNEL`] and
    /// counts each notification by its payload; a lost connection (which
    /// may have missed some) counts as a change of every kind. Its task ends
    /// when the last [`crate::ChangeSignals`] is dropped.
    async fn change_signals(&self) -> crate::Result<crate::ChangeSignals> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(crate::CHANGES_CHANNEL).await?;
        let (counts, signals) = tokio::sync::watch::channel(crate::Changes::default());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = counts.closed() => return,
                    got = listener.try_recv() => match got {
                        Ok(Some(n)) => counts.send_modify(|c| c.signal(n.payload())),
                        // The connection was lost; the next call reconnects.
                        Ok(None) => {
                            counts.send_modify(crate::Changes::everything);
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            counts.send_modify(crate::Changes::everything);
                            tracing::warn!(error = %e, "listening for other replicas' changes failed; retrying");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
        Ok(crate::ChangeSignals::new(signals))
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
