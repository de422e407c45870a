//! The reconciler's bookkeeping on accounts: which worker checks an account against Meta's
//! Conversations API (a lease per account, fleet-wide), since when, and how long webhooks have been
//! silent.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// Claims one connected account due for a check (none checked it within `interval`, nobody holds it)
/// for `hold`; a worker that dies mid-check blocks the account only that long.
pub async fn claim(pool: &PgPool, interval: Duration, hold: Duration) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "UPDATE instagram_credentials SET reconcile_lease_until = now() + make_interval(secs => $2)
         WHERE id = (
             SELECT id FROM instagram_credentials
             WHERE status IN ('active', 'expiring')
               AND (reconcile_lease_until IS NULL OR reconcile_lease_until < now())
               AND (reconciled_at IS NULL OR reconciled_at < now() - make_interval(secs => $1))
             ORDER BY reconciled_at NULLS FIRST
             LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(interval.as_secs_f64())
    .bind(hold.as_secs_f64())
    .fetch_optional(pool)
    .await
}

/// When an account was last checked, last heard from by webhook, and connected.
#[derive(Debug, sqlx::FromRow)]
pub struct Times {
    /// The last successful check started then.
    pub reconciled_at: Option<DateTime<Utc>>,
    /// The last webhook for it arrived then.
    pub last_webhook_at: Option<DateTime<Utc>>,
    /// Connected (or reconnected) then: nothing older is ours to answer.
    pub connected_at: DateTime<Utc>,
}

/// The account's [`Times`].
pub async fn times(pool: &PgPool, credential_id: Uuid) -> sqlx::Result<Times> {
    sqlx::query_as(
        "SELECT reconciled_at, last_webhook_at, connected_at FROM instagram_credentials WHERE id = $1",
    )
    .bind(credential_id)
    .fetch_one(pool)
    .await
}

/// The check is done: noted, and the account's lease given back.
pub async fn checked(pool: &PgPool, credential_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE instagram_credentials SET reconciled_at = now(), reconcile_lease_until = NULL WHERE id = $1",
    )
    .bind(credential_id)
    .execute(pool)
    .await
    .map(drop)
}

/// The longest time, in seconds, since the last webhook among active accounts (since connecting, for
/// one that never had one); `None` when there is no active account.
pub async fn longest_silence(pool: &PgPool) -> sqlx::Result<Option<f64>> {
    sqlx::query_scalar(
        "SELECT max(extract(epoch FROM now() - COALESCE(last_webhook_at, connected_at)))::float8
         FROM instagram_credentials WHERE status IN ('active', 'expiring')",
    )
    .fetch_one(pool)
    .await
}
