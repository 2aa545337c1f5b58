//! The embedded backend: one SQLite file, and the in-process writer queue in
//! front of its one write lock.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::sql::{Backend, RowsAffected, Tx};

/// The embedded store: one SQLite file, WAL mode, no set-up.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// SQLite has one writer; queueing writers here, instead of in SQLite's
    /// busy handler (which sleeps in steps of up to 100 ms), keeps tail latency low.
    writer: Arc<Mutex<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> crate::Result<Self> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            writer: Arc::default(),
        })
    }
}

impl Backend for SqliteStore {
    type Db = Sqlite;
    /// This process's turn to write: other writers wait for it here.
    type WriterTurn = OwnedMutexGuard<()>;
    /// `BEGIN IMMEDIATE` takes the database's one write lock up front.
    const LOCKS_ROWS: bool = false;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Waits for this process's turn to write, then starts a transaction
    /// holding SQLite's write lock from the start (`BEGIN IMMEDIATE`), so two
    /// writers never deadlock upgrading a read lock.
    async fn begin(&self) -> crate::Result<Tx<Self>> {
        let turn = self.writer.clone().lock_owned().await;
        Ok(Tx::new(
            self.pool.begin_with("BEGIN IMMEDIATE").await?,
            turn,
        ))
    }
}

impl RowsAffected for SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        SqliteQueryResult::rows_affected(self)
    }
}
