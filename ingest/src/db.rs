//! Ingest's database handle. Webhook intake never touches PostgreSQL (it only needs the broker), so the
//! database is prepared in the background: ingest starts and queues webhooks even while PostgreSQL is
//! down, and the admin API, OAuth flow and dashboard answer 503 until it is reachable.

use crate::api::ApiError;
use backon::{ExponentialBuilder, Retryable};
use omnidm_shared::config::DatabaseConfig;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// A pool that exists once the database was created (if missing) and migrated.
#[derive(Clone, Default)]
pub struct Database {
    pool: Arc<OnceCell<PgPool>>,
}

impl Database {
    /// Starts preparing the database in the background, retrying with backoff until it works.
    pub fn start(config: DatabaseConfig) -> Self {
        let database = Self::default();
        let cell = database.pool.clone();
        tokio::spawn(async move {
            let prepare = || omnidm_shared::db::connect_and_migrate(&config);
            let pool = prepare
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(200))
                        .with_max_delay(Duration::from_secs(10))
                        .with_jitter()
                        .without_max_times(),
                )
                .notify(|error, wait| {
                    tracing::warn!(%error, ?wait, "database not ready; admin API answers 503 meanwhile");
                })
                .await;
            if let Ok(pool) = pool {
                let _ = cell.set(pool);
                tracing::info!("database ready");
            }
        });
        database
    }

    /// A database that is ready now (tests, tools).
    pub fn ready(pool: PgPool) -> Self {
        Self {
            pool: Arc::new(OnceCell::new_with(Some(pool))),
        }
    }

    /// The pool, or 503 while the database is still being prepared.
    pub fn pool(&self) -> Result<&PgPool, ApiError> {
        self.pool.get().ok_or_else(ApiError::database_unavailable)
    }

    /// Waits (bounded) until the database is ready; for tests and start-up probes.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            while self.pool.get().is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .is_ok()
    }

    /// Closes the pool, if it was opened.
    pub async fn close(&self) {
        if let Some(pool) = self.pool.get() {
            pool.close().await;
        }
    }
}
