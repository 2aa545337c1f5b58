use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::sql::sql_store;

/// The embedded store: one SQLite file, WAL mode, no set-up.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// SQLite has one writer; queueing writers here, instead of in SQLite's
    /// busy handler (which sleeps in steps of up to 100 ms), keeps tail latency low.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
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
            writer: std::sync::Arc::default(),
        })
    }

    /// Starts a write transaction holding SQLite's write lock from the start;
    /// the returned guard keeps other writers of this process waiting until
    /// the transaction is over.
    async fn begin(
        &self,
    ) -> crate::Result<(
        sqlx::Transaction<'static, sqlx::Sqlite>,
        tokio::sync::OwnedMutexGuard<()>,
    )> {
        let guard = self.writer.clone().lock_owned().await;
        Ok((self.pool.begin_with("BEGIN IMMEDIATE").await?, guard))
    }
}

sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    for_update = ""
);
