//! Throw-away PostgreSQL databases, so tests and benchmarks never share state.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// The local PostgreSQL that tests use when `DATABASE_URL` is not set.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

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
        let admin_url = admin_url.unwrap_or(DEFAULT_TEST_DATABASE_URL).to_owned();
        let name = format!(
            "agentauth_scratch_{:016x}",
            RandomState::new().hash_one(std::process::id())
        );
        let mut conn = PgConnection::connect(&admin_url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Ok(Self {
            admin_url,
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
