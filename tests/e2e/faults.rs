//! A store that cannot take writes: SQLite on a disk that fills up, and a
//! PostgreSQL database turned read-only. Token requests answer `503
//! temporarily_unavailable` with `Retry-After`, nothing of a refused request
//! is written, the authority keeps running and serves again once the disk
//! has room or the database is writable. The SQLite data dir is a small
//! tmpfs mounted for the test, so it needs root (and `mount`); without them
//! the test says it was skipped and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Server, command, id, output_within};

/// A tmpfs mounted at a fresh directory, unmounted when dropped.
struct SmallDisk {
    at: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `megabytes` at `<tmp>/data`, or `None` with the reason.
    fn mount(megabytes: u32) -> Result<Self, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let at = parent.path().join("data");
        std::fs::create_dir(&at).map_err(|e| e.to_string())?;
        let options = format!("size={megabytes}m,mode=0700");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(&at)
            .output()
            .map_err(|e| format!("mount cannot run: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mounting a tmpfs failed (root needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            at,
            _parent: parent,
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    // Whatever fits in smaller pieces too, so not a page is left.
    while file.write_all(&block[..512]).is_ok() {}
    let _ = file.sync_all();
    path
}

/// A token request for reader → customer: status, `Retry-After` present, body.
async fn token(s: &Server, key: &agentauth_core::SigningKey) -> (StatusCode, bool, Value) {
    let response = s
        .http
        .post(format!("{}/oauth/token", s.url))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                agentauth_core::CLIENT_ASSERTION_TYPE,
            ),
            ("client_assertion", &s.assertion("reader", key)),
            ("resource", &id("customer")),
            ("scope", "read:customer"),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry = response.headers().contains_key("retry-after");
    (status, retry, response.json().await.unwrap_or(Value::Null))
}

/// Sends token requests until one is refused (at most `limit`); returns
/// how many were issued before it and the refusal.
async fn until_refused(
    s: &Server,
    key: &agentauth_core::SigningKey,
    limit: usize,
) -> (usize, Option<(StatusCode, bool, Value)>) {
    for issued in 0..limit {
        let answer = token(s, key).await;
        if answer.0 != StatusCode::OK {
            return (issued, Some(answer));
        }
    }
    (limit, None)
}

fn assert_unavailable(answer: &(StatusCode, bool, Value), when: &str) {
    let (status, retry, body) = answer;
    assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{when}: {body}");
    assert!(retry, "{when}: a 503 says when to retry");
    assert_eq!(body["error"], "temporarily_unavailable", "{when}: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{when}: {body}"
    );
}

// Multi-threaded: `Server::spawn` blocks its thread until the banner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_503_writes_nothing_and_recovers_when_it_has_room() {
    let disk = match SmallDisk::mount(8) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let mut s = Server::spawn(&disk.at, None, &[], &[]);
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let mut issued = 0;
    assert_eq!(token(&s, &key).await.0, StatusCode::OK);
    issued += 1;

    // Full: the write-ahead log cannot grow. Requests go on until one needs
    // a page that is not there.
    let filler = fill(&disk.at);
    let (more, refused) = until_refused(&s, &key, 5000).await;
    issued += more;
    let refused = refused.expect("a full disk never refused a token");
    assert_unavailable(&refused, "disk full");
    let alive = s
        .http
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(alive.status(), StatusCode::OK, "the process is alive");
    // Room again: the same authority issues again, no restart.
    std::fs::remove_file(&filler).unwrap();
    let answer = token(&s, &key).await;
    assert_eq!(
        answer.0,
        StatusCode::OK,
        "after the disk had room: {}; the log:\n{}",
        answer.2,
        std::fs::read_to_string(disk.at.with_extension("log")).unwrap_or_default()
    );
    issued += 1;

    // Nothing half-written: exactly the answered tokens have their audit
    // records, and the chain with its codes is intact.
    let records = s.audit_records("?kind=token.issued&limit=10000").await;
    assert_eq!(records.len(), issued, "one record per answered token");
    let _ = Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status();
    assert_eq!(s.wait_exit(std::time::Duration::from_secs(10)), Some(true));
    let mut verify = command();
    verify.args(["audit", "verify", "--data-dir"]).arg(&disk.at);
    let out = tokio::task::spawn_blocking(move || {
        output_within(&mut verify, std::time::Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Turns the database at `url` read-only for new sessions (or writable
/// again) and ends every other session on it, so the authority's pool
/// reconnects under the new default.
async fn set_read_only(url: &str, read_only: bool) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let value = if read_only { "on" } else { "off" };
    // This session must write even while new ones default to read-only.
    sqlx::query("SET default_transaction_read_only = off")
        .execute(&mut conn)
        .await
        .unwrap();
    // The name is the scratch database's, made by the test itself.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{database}\" SET default_transaction_read_only = {value}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_postgresql_refuses_with_503_writes_nothing_and_recovers() {
    let Some(s) = Server::start_postgres().await else {
        return;
    };
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    assert_eq!(token(&s, &key).await.0, StatusCode::OK);
    let mut issued = 1;

    set_read_only(&s.database_url, true).await;
    // The first request may meet a connection that was just ended; every
    // answer is a clean 503 all the same.
    for _ in 0..5 {
        assert_unavailable(&token(&s, &key).await, "read-only database");
    }
    set_read_only(&s.database_url, false).await;
    let mut answer = token(&s, &key).await;
    for _ in 0..50 {
        if answer.0 == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        answer = token(&s, &key).await;
    }
    assert_eq!(
        answer.0,
        StatusCode::OK,
        "after the database was writable: {}",
        answer.2
    );
    issued += 1;
    let records = s.audit_records("?kind=token.issued&limit=1000").await;
    assert_eq!(records.len(), issued, "one record per answered token");
    s.stop().await;
}
