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
    /// A stored value could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}
