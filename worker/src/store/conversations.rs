//! Conversations: upserted per (channel, account, user); a lease so one worker at a time replies; the
//! human-takeover pause.

use super::credentials::{Credential, CREDENTIAL_COLUMNS, CREDENTIAL_FROM};
use super::messages::WORK;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// Finds an existing conversation.
pub async fn find(
    pool: &PgPool,
    channel: &str,
    account_id: &str,
    external_user_id: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM conversations WHERE channel = $1 AND account_id = $2 AND external_user_id = $3",
    )
    .bind(channel)
    .bind(account_id)
    .bind(external_user_id)
    .fetch_optional(pool)
    .await
}

/// A reply pass's claim on a conversation: one worker at a time produces its replies, and a crashed
/// holder's claim simply expires after `ttl`.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    /// The conversation.
    pub conversation_id: Uuid,
    /// The reply pass holding it (not the process: two jobs of one worker exclude each other too).
    pub owner: Uuid,
    /// How long the claim lasts unless renewed.
    pub ttl: Duration,
}

/// Gives the conversation `cv` to the lease `l` (a row with `owner` and `ttl` in seconds) for its
/// `ttl`; pair with [`LEASE_AVAILABLE`].
pub(crate) const TAKE_LEASE: &str =
    "lease_owner = l.owner, lease_expires_at = now() + make_interval(secs => l.ttl)";

/// The conversation `cv` is free for the lease `l`: unleased, already its own, or its holder's lease
/// expired.
pub(crate) const LEASE_AVAILABLE: &str =
    "(cv.lease_owner IS NULL OR cv.lease_owner = l.owner OR cv.lease_expires_at < now())";

/// Lets the statement's transaction commit without waiting for its WAL flush (`synchronous_commit =
/// off` for that transaction only; PostgreSQL documents per-transaction use for exactly this mix). For
/// the lease bookkeeping and for storing an answer, whose waits were a third of a reply's database time:
/// a PostgreSQL *crash* can lose at most the last few hundred milliseconds of them, which costs a lease
/// expiry or a second AI call, never a lost or doubled message, because the send is always preceded by a
/// durable commit that marks the chunk `sending` (`create_replies` claiming the first chunk, or
/// `mark_sending`) and flushes them with it. True; goes in the statement's `WHERE`.
pub(crate) const RELAXED_COMMIT: &str = "set_config('synchronous_commit', 'off', true) IS NOT NULL";

/// What the lease holder needs to know: the conversation and, read in the same statement, its account
/// (status, throttle pause and token change while replies are produced, so it is re-read every pass).
#[derive(Debug, sqlx::FromRow)]
pub struct Leased {
    /// The human-takeover pause, if any.
    pub ai_paused_until: Option<DateTime<Utc>>,
    /// Who we answer.
    pub external_user_id: String,
    /// The account it belongs to.
    #[sqlx(flatten)]
    pub credential: Credential,
}

/// Takes (or renews) the lease and reads the conversation and its account in one round trip. `None`:
/// another live reply pass holds it.
pub async fn acquire_lease(pool: &PgPool, lease: &Lease) -> sqlx::Result<Option<Leased>> {
    sqlx::query_as(&format!(
        "UPDATE conversations cv SET {TAKE_LEASE}
         FROM {CREDENTIAL_FROM}, (VALUES ($2::uuid, $3::float8)) AS l (owner, ttl)
         WHERE cv.id = $1 AND c.id = cv.credential_id AND {LEASE_AVAILABLE} AND {RELAXED_COMMIT}
         RETURNING cv.ai_paused_until, cv.external_user_id, {CREDENTIAL_COLUMNS}"
    ))
    .bind(lease.conversation_id)
    .bind(lease.owner)
    .bind(lease.ttl.as_secs_f64())
    .fetch_optional(pool)
    .await
}

/// Gives the lease back, but only if the conversation has no work left (no unanswered message, no
/// unsent chunk): the usual end of a pass, in one round trip. `false`: something arrived meanwhile and
/// the holder must go round again (a job that found the lease taken relies on it, or on its own retry).
pub async fn release_if_idle(pool: &PgPool, lease: &Lease) -> sqlx::Result<bool> {
    release(
        pool,
        lease,
        &format!("NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = cv.id AND {WORK})"),
    )
    .await
}

/// Gives the lease back so the next message is answered without waiting for expiry.
pub async fn release_lease(pool: &PgPool, lease: &Lease) -> sqlx::Result<()> {
    release(pool, lease, "true").await.map(drop)
}

/// Clears the lease of the conversation `cv` if `lease` still holds it and `condition` is true.
async fn release(pool: &PgPool, lease: &Lease, condition: &str) -> sqlx::Result<bool> {
    let released = sqlx::query(&format!(
        "UPDATE conversations cv SET lease_owner = NULL, lease_expires_at = NULL
         WHERE cv.id = $1 AND cv.lease_owner = $2 AND {RELAXED_COMMIT} AND {condition}"
    ))
    .bind(lease.conversation_id)
    .bind(lease.owner)
    .execute(pool)
    .await?;
    Ok(released.rows_affected() == 1)
}

/// A human answered from the Instagram app: the AI stays quiet until `until`.
pub async fn pause_ai(pool: &PgPool, id: Uuid, until: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query("UPDATE conversations SET ai_paused_until = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(until)
        .execute(pool)
        .await
        .map(drop)
}

/// Conversations of an account with work left: unanswered inbound messages or unsent reply chunks.
pub async fn with_unanswered(pool: &PgPool, credential_id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(&format!(
        "SELECT DISTINCT c.id FROM conversations c JOIN messages m ON m.conversation_id = c.id
         WHERE c.credential_id = $1 AND {WORK}"
    ))
    .bind(credential_id)
    .fetch_all(pool)
    .await
}
