//! PostgreSQL: create the database if it is missing, run the embedded migrations, hand out a pool.
//!
//! Migrations are embedded at compile time (`sqlx::migrate!`) and guarded by sqlx's advisory lock, so any
//! number of ingest and worker processes may start at once against a fresh database.

use crate::config::DatabaseConfig;
use secrecy::ExposeSecret;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
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

/// How PostgreSQL plans the prepared statements of a pool's connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Planning {
    /// PostgreSQL's own choice (`plan_cache_mode = auto`): right for varied, occasional queries.
    #[default]
    Auto,
    /// Each statement planned once per connection (`plan_cache_mode = force_generic_plan`), for a
    /// process running the same few statements thousands of times a second. The worker's batched
    /// statements take arrays, whose length PostgreSQL only sees when it plans for one execution, so
    /// `auto` re-planned every one of them: planning was 43 % of the database's CPU at the worker's
    /// full load (perf). Their generic plans are key lookups, the same as the per-execution ones,
    /// once the tables have statistics: autovacuum's `ANALYZE` gives them, and invalidates the plans
    /// made before it (a brand-new database plans for empty tables until then).
    OncePerConnection,
}

/// Creates the database if needed, migrates it and returns a pool planning as PostgreSQL chooses.
pub async fn connect_and_migrate(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    connect_and_migrate_planned(config, Planning::Auto).await
}

/// [`connect_and_migrate`] with the pool's statements planned as `planning` says.
pub async fn connect_and_migrate_planned(
    config: &DatabaseConfig,
    planning: Planning,
) -> Result<PgPool, DbError> {
    let url = config.database_url.expose_secret();
    create_if_missing(url).await?;
    let mut options: PgConnectOptions = url.parse()?;
    if planning == Planning::OncePerConnection {
        options = options.options([("plan_cache_mode", "force_generic_plan")]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
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
