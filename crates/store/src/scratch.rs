//! Throw-away PostgreSQL databases, so tests and benchmarks never share state,
//! and the rule for tests when no PostgreSQL is there.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// The local PostgreSQL that tests use when `DATABASE_URL` is not set.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long a test waits for PostgreSQL to answer before taking it as absent,
/// so a port nothing answers on does not hang the run.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A fresh, empty database on the server of `admin_url`.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// Connection URL of the new database.
    pub url: String,
}

impl ScratchDatabase {
    /// Creates `agentauth_scratch_<random>` next to the database of `admin_url`
    /// (`DATABASE_URL`, or [`DEFAULT_TEST_DATABASE_URL`] when `None`).
    pub async fn create(admin_url: Option<&str>) -> crate::Result<Self> {
        let admin_url = admin_url.unwrap_or(DEFAULT_TEST_DATABASE_URL);
        let conn = PgConnection::connect(admin_url).await?;
        Self::create_on(conn, admin_url).await
    }

    /// A scratch database for the test named `test`, on the server at
    /// `DATABASE_URL` (or [`DEFAULT_TEST_DATABASE_URL`]). When that server is
    /// not reachable the test is skipped: this prints one `skipped: …` line to
    /// stderr and returns `None`, unless `AGENTAUTH_TEST_POSTGRES=required`,
    /// which makes it panic instead. A server that answers but rejects the
    /// connection (bad credentials, too many clients) panics either way.
    pub async fn for_test(test: &str) -> Option<Self> {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
        let shown = without_password(&admin_url);
        let error = match connect(&admin_url).await {
            Connect::Open(conn) => {
                let created = Self::create_on(conn, &admin_url).await;
                return Some(created.unwrap_or_else(|e| {
                    panic!("could not create a scratch database at {shown}: {e}")
                }));
            }
            Connect::Rejected(e) => panic!("could not connect to PostgreSQL at {shown}: {e}"),
            Connect::Unreachable(error) => error,
        };
        if std::env::var("AGENTAUTH_TEST_POSTGRES").as_deref() == Ok("required") {
            panic!(
                "PostgreSQL is not reachable at {shown} ({error}) and AGENTAUTH_TEST_POSTGRES=required"
            );
        }
        // Straight to stderr: the test harness hides `eprintln!` of a test that passes.
        let _ = writeln!(
            std::io::stderr().lock(),
            "skipped: {test}: PostgreSQL is not reachable at {shown} ({error}); \
             set AGENTAUTH_TEST_POSTGRES=required to fail instead"
        );
        None
    }

    async fn create_on(mut conn: PgConnection, admin_url: &str) -> crate::Result<Self> {
        let name = format!(
            "agentauth_scratch_{:016x}",
            RandomState::new().hash_one(std::process::id())
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        let url = format!("{base}/{name}");
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    /// Drops the database (after its pools are closed).
    pub async fn drop_database(self) -> crate::Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

/// How an attempt to connect to the test server ended.
enum Connect {
    Open(PgConnection),
    /// The server answered and turned the connection down.
    Rejected(sqlx::Error),
    /// Nothing answered (refused or dropped at the network, or too slowly).
    Unreachable(String),
}

/// Connects within [`CONNECT_TIMEOUT`]. Once the server has been found
/// unreachable, later tests of the process skip at once with the same error
/// rather than each waiting out the timeout.
async fn connect(url: &str) -> Connect {
    static UNREACHABLE: OnceLock<String> = OnceLock::new();
    if let Some(error) = UNREACHABLE.get() {
        return Connect::Unreachable(error.clone());
    }
    let error = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => return Connect::Open(conn),
        Ok(Err(sqlx::Error::Io(e))) => e.to_string(),
        Ok(Err(e)) => return Connect::Rejected(e),
        Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
    };
    Connect::Unreachable(UNREACHABLE.get_or_init(|| error).clone())
}

/// `url` with any password replaced by `***`, to print it.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((user_info, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match user_info.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn a_password_in_a_database_url_is_not_printed() {
        assert_eq!(
            without_password("postgres://app:s3cret@db:5432/test"),
            "postgres://app:***@db:5432/test"
        );
        assert_eq!(
            without_password("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(without_password("sqlite://x.db"), "sqlite://x.db");
    }
}
