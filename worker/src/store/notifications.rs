//! The outbox of notifications to businesses (`POST <notifyUrl>`): written in the transaction that
//! decides them, claimed by whichever worker is free, retried with backoff until delivered or given up.
//! A business's slow or dead server can never hold up a reply.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// Queues a notification for the customer if it set a `notifyUrl` (else nothing). Returns whether one
/// was queued.
pub async fn enqueue(
    executor: impl sqlx::PgExecutor<'_>,
    customer_id: Uuid,
    conversation_id: Uuid,
    payload: &serde_json::Value,
) -> sqlx::Result<bool> {
    let event = payload
        .get("event")
        .and_then(|e| e.as_str())
        .unwrap_or("notification");
    let queued = sqlx::query(
        "INSERT INTO notifications (id, customer_id, conversation_id, event, payload)
         SELECT $1, cu.id, $3, $4, $5 FROM customers cu WHERE cu.id = $2 AND cu.notify_url IS NOT NULL",
    )
    .bind(payload_id(payload).unwrap_or_else(Uuid::now_v7))
    .bind(customer_id)
    .bind(conversation_id)
    .bind(event)
    .bind(payload)
    .execute(executor)
    .await?;
    Ok(queued.rows_affected() > 0)
}

/// The notification's own id, carried in its payload (`id`) so the receiver can deduplicate retries.
fn payload_id(payload: &serde_json::Value) -> Option<Uuid> {
    payload.get("id")?.as_str()?.parse().ok()
}

/// A notification claimed for one delivery attempt.
#[derive(Debug, sqlx::FromRow)]
pub struct Due {
    /// Its id (the `X-Omnidm-Delivery` header).
    pub id: Uuid,
    /// The business.
    pub customer_id: Uuid,
    /// `conversation.escalated`, …
    pub event: String,
    /// The body, exactly as signed.
    pub payload: serde_json::Value,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// Where to POST it (the customer's current setting; `None`: removed since, so it is dropped).
    pub notify_url: Option<String>,
    /// The HMAC key, encrypted.
    pub notify_secret_enc: Option<String>,
}

/// Claims up to `limit` due notifications for an attempt, pushing their next attempt `hold` ahead so a
/// worker that dies mid-attempt delays them only that long. Rows other workers hold are skipped.
pub async fn claim_due(pool: &PgPool, limit: i64, hold: std::time::Duration) -> sqlx::Result<Vec<Due>> {
    sqlx::query_as(
        "WITH due AS (
             SELECT id FROM notifications
             WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT $1
             FOR UPDATE SKIP LOCKED
         )
         UPDATE notifications n
         SET attempts = n.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
         FROM due, customers cu
         WHERE n.id = due.id AND cu.id = n.customer_id
         RETURNING n.id, n.customer_id, n.event, n.payload, n.attempts, cu.notify_url, cu.notify_secret_enc",
    )
    .bind(limit)
    .bind(hold.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// The business's server accepted it.
pub async fn delivered(pool: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE notifications SET delivered_at = now(), last_error = NULL WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map(drop)
}

/// The attempt failed: try again at `next` or, with `None`, give up.
pub async fn failed(pool: &PgPool, id: Uuid, error: &str, next: Option<DateTime<Utc>>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE notifications
         SET last_error = $2, next_attempt_at = COALESCE($3, next_attempt_at),
             failed_at = CASE WHEN $3 IS NULL THEN now() END
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(next)
    .execute(pool)
    .await
    .map(drop)
}
