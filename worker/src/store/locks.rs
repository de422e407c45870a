//! Fleet-wide jobs that one worker at a time runs (the token lifecycle), by PostgreSQL advisory lock:
//! held by a session, so a worker that dies lets go with its connection.

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

/// A held advisory lock and the connection that holds it.
pub struct FleetLock {
    key: i64,
    connection: PoolConnection<Postgres>,
}

/// Takes the lock `key` if no other worker holds it.
pub async fn try_lock(pool: &PgPool, key: i64) -> sqlx::Result<Option<FleetLock>> {
    let mut connection = pool.acquire().await?;
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut *connection)
        .await?;
    Ok(held.then_some(FleetLock { key, connection }))
}

impl FleetLock {
    /// Lets go. Should that fail, the connection is closed rather than returned to the pool holding
    /// the lock (the lock dies with its session).
    pub async fn unlock(mut self) {
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut *self.connection)
            .await;
        if unlocked.is_err() {
            self.connection.detach();
        }
    }
}
