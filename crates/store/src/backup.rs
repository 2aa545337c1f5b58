//! An online copy of the SQLite store, made with SQLite's backup API while
//! the authority keeps running: the copy is one consistent snapshot, every
//! committed transaction up to its moment and nothing half-written.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::{Result, StoreError};

/// How often a step that found the database busy is tried again.
const BUSY_RETRIES: u32 = 200;

/// Copies the SQLite database at `database` to a new file `out` (created
/// 0600, never overwritten) and returns the pages copied. Writers go on
/// meanwhile (WAL mode): the copy is the database as of one moment.
pub fn backup_sqlite(database: &Path, out: &Path) -> Result<u64> {
    let failed = |what: &str, e: &dyn std::fmt::Display| StoreError::Backup(format!("{what}: {e}"));
    if !database.is_file() {
        return Err(StoreError::Backup(format!(
            "no SQLite database at {}",
            database.display()
        )));
    }
    let source = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| failed(&format!("opening {}", database.display()), &e))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| {
            failed(
                &format!("creating {} (it must not exist yet)", out.display()),
                &e,
            )
        })?;
    let copied = copy(&source, out);
    if copied.is_err() {
        // Nothing half-written is left behind.
        let _ = std::fs::remove_file(out);
    }
    copied
}

fn copy(source: &Connection, out: &Path) -> Result<u64> {
    let failed = |e: rusqlite::Error| StoreError::Backup(format!("copying: {e}"));
    let mut target = Connection::open(out).map_err(failed)?;
    let backup = Backup::new(source, &mut target).map_err(failed)?;
    // All pages in one step: one read transaction, so one snapshot.
    let mut busy = 0;
    loop {
        match backup.step(-1).map_err(failed)? {
            StepResult::Done => break,
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked => {
                busy += 1;
                if busy > BUSY_RETRIES {
                    return Err(StoreError::Backup(
                        "the database stayed locked; try again".into(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {}
        }
    }
    let pages = u64::try_from(backup.progress().pagecount).unwrap_or(0);
    drop(backup);
    target
        .query_row("PRAGMA integrity_check", [], |row| row.get::<_, String>(0))
        .map_err(failed)
        .and_then(|verdict| {
            if verdict == "ok" {
                Ok(pages)
            } else {
                Err(StoreError::Backup(format!(
                    "the copy fails its integrity check: {verdict}"
                )))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_holds_what_was_committed_and_an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let live = Connection::open(&db).unwrap();
        live.pragma_update(None, "journal_mode", "WAL").unwrap();
        live.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        // A transaction still open is not in the copy.
        live.execute_batch("BEGIN; INSERT INTO t VALUES (3);")
            .unwrap();

        let out = dir.path().join("copy.db");
        assert!(backup_sqlite(&db, &out).unwrap() > 0);
        let copy = Connection::open(&out).unwrap();
        let sum: i64 = copy
            .query_row("SELECT sum(x) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sum, 3);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let again = backup_sqlite(&db, &out);
        assert!(matches!(again, Err(StoreError::Backup(_))), "{again:?}");
        let missing = backup_sqlite(&dir.path().join("none.db"), &dir.path().join("x.db"));
        assert!(matches!(missing, Err(StoreError::Backup(_))));
        assert!(!dir.path().join("x.db").exists());
    }
}
