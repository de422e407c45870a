//! Conversations: upserted per (channel, account, user); a lease so one worker at a time replies; the
//! human-takeover pause.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// Creates the conversation on first contact, returns its id either way.
pub async fn upsert(
    pool: &PgPool,
    credential: &super::credentials::Credential,
    external_user_id: &str,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar(
        "INSERT INTO conversations (id, customer_id, credential_id, channel, account_id, external_user_id)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (channel, account_id, external_user_id) DO UPDATE SET updated_at = now()
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(credential.customer_id)
    .bind(credential.id)
    .bind(&credential.channel)
    .bind(&credential.account_id)
    .bind(external_user_id)
    .fetch_one(pool)
    .await
}

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

/// What the lease holder needs to know about the conversation.
#[derive(Debug, sqlx::FromRow)]
pub struct Leased {
    /// The human-takeover pause, if any.
    pub ai_paused_until: Option<DateTime<Utc>>,
    /// Who we answer.
    pub external_user_id: String,
    /// The account it belongs to.
    pub credential_id: Uuid,
}

/// Takes (or renews) the conversation's lease for `owner`. `None`: another live worker holds it.
pub async fn acquire_lease(
    pool: &PgPool,
    id: Uuid,
    owner: Uuid,
    ttl: Duration,
) -> sqlx::Result<Option<Leased>> {
    sqlx::query_as(
        "UPDATE conversations
         SET lease_owner = $2, lease_expires_at = now() + make_interval(secs => $3)
         WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at < now())
         RETURNING ai_paused_until, external_user_id, credential_id",
    )
    .bind(id)
    .bind(owner)
    .bind(ttl.as_secs_f64())
    .fetch_optional(pool)
    .await
}

/// Gives the lease back so the next message is answered without waiting for expiry.
pub async fn release_lease(pool: &PgPool, id: Uuid, owner: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE conversations SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2")
        .bind(id)
        .bind(owner)
        .execute(pool)
        .await
        .map(drop)
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
    sqlx::query_scalar(
        "SELECT DISTINCT c.id FROM conversations c JOIN messages m ON m.conversation_id = c.id
         WHERE c.credential_id = $1 AND m.status IN ('pending', 'queued', 'sending')",
    )
    .bind(credential_id)
    .fetch_all(pool)
    .await
}
