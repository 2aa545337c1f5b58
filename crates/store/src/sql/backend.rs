//! What the SQLite and PostgreSQL stores do differently, and the sqlx
//! capabilities the shared statements need from either.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use agentauth_core::AuditKey;

use sqlx::{Database, Decode, Encode, IntoArguments, Pool, Transaction, Type};

use crate::Result;

/// A store the shared SQL runs on. The statements are the same on both
/// backends (`$N` placeholders, `RETURNING`, `ON CONFLICT`); only how a write
/// transaction starts and whether rows are locked differ.
pub(crate) trait Backend: Clone + Sized + Send + Sync + 'static {
    /// The sqlx driver.
    type Db: Database<Arguments: IntoArguments<Self::Db>, QueryResult: RowsAffected>;
    /// Held from the start of a write transaction to its end, to keep this
    /// process's other writers waiting (`()` where the database queues them).
    type WriterTurn: Send;
    /// Whether a `SELECT` of rows the transaction changes next locks them
    /// (`FOR UPDATE`): needed where writers run concurrently.
    const LOCKS_ROWS: bool;
    /// Whether the issuance writer runs on a thread of its own (its
    /// connections must then not be bound to the shared runtime's I/O, as
    /// SQLite's, which sit on threads of their own, are not).
    const WRITER_THREAD: bool;
    /// Whether a commit that publishes revocations, activates a policy set
    /// or changes credentials notifies other processes on the database
    /// (PostgreSQL `NOTIFY` on [`crate::CHANGES_CHANNEL`]).
    const NOTIFIES: bool;

    /// The connection pool, for reads and single-statement writes.
    fn pool(&self) -> &Pool<Self::Db>;
    /// Starts a write transaction.
    fn begin(&self) -> impl Future<Output = Result<Tx<Self>>> + Send;
    /// The key audit records are authenticated with, once the authority
    /// has set it; shared with every transaction.
    fn audit_key(&self) -> &Arc<OnceLock<AuditKey>>;
    /// The queue in front of this store's issuance writer.
    fn group_commit(&self) -> &super::GroupCommit;
    /// The in-memory copy of hot rows, where this store is its database's
    /// only writer (SQLite); `None` where other processes write too.
    fn read_cache(&self) -> Option<&super::ReadCache>;
    /// Called by the issuance writer after each batch it committed, for
    /// upkeep that must not hold the batch's requesters.
    fn after_batch(&self) {}
    /// See [`crate::Store::change_signals`]; signals that never fire where
    /// no other process writes.
    fn change_signals(&self) -> impl Future<Output = Result<crate::ChangeSignals>> + Send {
        async { Ok(crate::ChangeSignals::default()) }
    }
}

/// How many rows a statement changed; sqlx has no trait for it.
pub(crate) trait RowsAffected {
    /// Rows inserted, updated or deleted.
    fn rows_affected(&self) -> u64;
}

/// A connection of backend `B`.
pub(crate) type Conn<B> = <<B as Backend>::Db as Database>::Connection;
/// A result row of backend `B`.
pub(crate) type Row<B> = <<B as Backend>::Db as Database>::Row;

/// A borrowed value the shared statements bind on database `DB`.
pub(crate) trait Param<'q, DB: Database>: Encode<'q, DB> + Type<DB> {}

impl<'q, DB: Database, T: Encode<'q, DB> + Type<DB>> Param<'q, DB> for T {}

/// A value the shared statements bind and read back on database `DB`.
pub(crate) trait Column<DB: Database>:
    for<'q> Param<'q, DB> + for<'r> Decode<'r, DB>
{
}

impl<DB: Database, T> Column<DB> for T where T: for<'q> Param<'q, DB> + for<'r> Decode<'r, DB> {}

/// A write transaction and, on SQLite, this process's writer turn.
pub(crate) struct Tx<B: Backend> {
    // Fields drop in order: the transaction (rolled back unless committed)
    // before the turn lets the next writer in.
    tx: Transaction<'static, B::Db>,
    _turn: B::WriterTurn,
    audit_key: Arc<OnceLock<AuditKey>>,
    /// Whether this transaction holds the revocation order lock (see
    /// [`super::RevocationOrder`]), so it is taken once.
    pub(crate) ordered: bool,
}

impl<B: Backend> Tx<B> {
    /// Wraps a transaction of `store` begun while holding `turn`.
    pub(crate) fn new(store: &B, tx: Transaction<'static, B::Db>, turn: B::WriterTurn) -> Self {
        Self {
            tx,
            _turn: turn,
            audit_key: store.audit_key().clone(),
            ordered: false,
        }
    }

    /// The key that authenticates the audit records this transaction
    /// appends; appending without one fails, never writes an unkeyed record.
    pub(crate) fn audit_key(&self) -> Result<&AuditKey> {
        self.audit_key
            .get()
            .ok_or(crate::StoreError::AuditKeyMissing)
    }

    /// Commits, then lets the next writer in.
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl<B: Backend> std::ops::Deref for Tx<B> {
    type Target = Conn<B>;

    fn deref(&self) -> &Conn<B> {
        &self.tx
    }
}

impl<B: Backend> std::ops::DerefMut for Tx<B> {
    fn deref_mut(&mut self) -> &mut Conn<B> {
        &mut self.tx
    }
}

/// A `SELECT` of rows that the transaction then changes. PostgreSQL locks
/// them (`FOR UPDATE`), since replicas write concurrently; SQLite has taken
/// its one write lock with `BEGIN IMMEDIATE` already and has no such clause.
pub(crate) struct ForUpdate {
    select: &'static str,
    locking: OnceLock<String>,
}

impl ForUpdate {
    /// The `SELECT` without the locking clause.
    pub(crate) const fn new(select: &'static str) -> Self {
        Self {
            select,
            locking: OnceLock::new(),
        }
    }

    /// The statement for backend `B`; built once, so no statement costs an
    /// allocation per call.
    pub(crate) fn sql<B: Backend>(&'static self) -> &'static str {
        if B::LOCKS_ROWS {
            self.locking
                .get_or_init(|| format!("{} FOR UPDATE", self.select))
        } else {
            self.select
        }
    }
}
