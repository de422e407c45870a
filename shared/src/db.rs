//! PostgreSQL: create the database if it is missing, run the embedded migrations, hand out a pool.
//!
//! Migrations are embedded at compile time (`sqlx::migrate!`) and guarded by sqlx's advisory lock, so any
//! number of ingest and worker processes may start at once against a fresh database.

use crate::config::DatabaseConfig;
use secrecy::ExposeSecret;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

/// The schema, shared by every binary and test.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Why the database could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Connecting, creating or querying failed.
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Creates the database if needed, migrates it and returns a pool.
pub async fn connect_and_migrate(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    let url = config.database_url.expose_secret();
    create_if_missing(url).await?;
    let pool = PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

async fn create_if_missing(url: &str) -> Result<(), sqlx::Error> {
    if sqlx::Postgres::database_exists(url).await? {
        return Ok(());
    }
    match sqlx::Postgres::create_database(url).await {
        // Another process created it between our check and our create (42P04), or at the same moment
        // (23505 on pg_database's unique index): either way it exists now.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => Ok(()),
        other => other,
    }
}
