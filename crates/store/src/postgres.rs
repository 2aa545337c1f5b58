use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::sql::sql_store;

/// The shared store: a PostgreSQL database that several authority replicas use.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn connect(url: &str) -> crate::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Starts a transaction; PostgreSQL locks rows itself, so there is no guard.
    async fn begin(&self) -> crate::Result<(sqlx::Transaction<'static, sqlx::Postgres>, ())> {
        Ok((self.pool.begin().await?, ()))
    }
}

sql_store!(
    PgStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    for_update = " FOR UPDATE"
);
