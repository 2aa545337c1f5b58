//! `StoreError`: every way a store operation fails, for the authority to map
//! to an answer.

use thiserror::Error;

/// Every way a store operation fails.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique name or key already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The named record does not exist.
    #[error("{0} was not found")]
    NotFound(String),
    /// The record is no longer in a state that allows the change (decided,
    /// used or expired).
    #[error("{0}")]
    Stale(String),
    /// A client_credentials token names a task (`txn`) that another agent
    /// started; other agents join a task only by token exchange.
    #[error("task \"{0}\" was started by another agent")]
    TaskOfAnother(String),
    /// A spawn would give the parent more live (active, unexpired) children
    /// than the limit passed to [`crate::Store::spawn_agent`].
    #[error("the parent already has {0} live children")]
    TooManyChildren(i64),
    /// An exchanged token's subject token was revoked (directly, or with its
    /// key, agent or an ancestor) before the exchange committed; nothing of
    /// the exchange was written.
    #[error("the subject token was revoked while it was being exchanged")]
    SubjectRevoked,
    /// A client assertion `jti` was presented a second time.
    #[error("the client assertion was already used")]
    ReplayedAssertion,
    /// An audit record was to be appended before the authority set the key
    /// that authenticates records ([`crate::Store::set_audit_key`]).
    #[error("the audit key is not set: no audit record can be written")]
    AuditKeyMissing,
    /// Too many writes are waiting for the database: this one was refused
    /// at once rather than queued without bound. Retrying shortly may succeed.
    #[error("the store is overloaded: too many writes are waiting")]
    Overloaded,
    /// The database could not take the write (it is unreachable, full or
    /// read-only); nothing of it was written. Retrying later may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A backup could not be made; nothing was left at the target.
    #[error("backup failed: {0}")]
    Backup(String),
    /// A stored value could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

/// A database that cannot be reached, is shutting down, full or read-only
/// is [`StoreError::Unavailable`] (a 503 that says to retry); anything else
/// is [`StoreError::Database`].
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if unavailable(&e) {
            Self::Unavailable(e.to_string())
        } else {
            Self::Database(e)
        }
    }
}

/// Whether `e` says the database is out of reach for now rather than that
/// the statement was wrong.
fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| match code.len() {
            // PostgreSQL SQLSTATE: connection exceptions (08…), insufficient
            // resources (53…: disk full, out of memory, too many
            // connections), operator intervention (57P01–57P03: shut down,
            // crash, cannot connect now), a read-only transaction (25006).
            5 => {
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code == "25006"
            }
            // SQLite result codes, extended ones carrying the primary code
            // in their low byte: SQLITE_READONLY (8), SQLITE_IOERR (10),
            // SQLITE_FULL (13), SQLITE_CANTOPEN (14).
            _ => code
                .parse::<u32>()
                .is_ok_and(|c| matches!(c & 0xff, 8 | 10 | 13 | 14)),
        }),
        _ => false,
    }
}

impl StoreError {
    pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection as _;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    use super::*;

    #[tokio::test]
    async fn a_read_only_database_is_unavailable_and_a_wrong_statement_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("x.db"))
            .create_if_missing(true);
        let mut writable = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut writable)
            .await
            .unwrap();
        writable.close().await.unwrap();

        let mut read_only = SqliteConnection::connect_with(&options.read_only(true))
            .await
            .unwrap();
        let refused = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut read_only)
            .await
            .unwrap_err();
        let refused = StoreError::from(refused);
        assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
        let wrong = sqlx::query("INSERT INTO missing VALUES (1)")
            .execute(&mut read_only)
            .await
            .unwrap_err();
        let wrong = StoreError::from(wrong);
        assert!(matches!(wrong, StoreError::Database(_)), "{wrong:?}");
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
    }
}
