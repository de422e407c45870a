//! The per-account audit trail (`account_events`): what happened to a connection and when, written by
//! ingest (connect, disconnect), the token lifecycle and the reconciler, read by the admin status API.
//! One writer function so every producer records the same shape.

use uuid::Uuid;

/// Appends an event to an account's trail; `executor` may be a pool or an open transaction.
pub async fn record<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    credential_id: Uuid,
    kind: &str,
    detail: serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO account_events (id, credential_id, kind, detail) VALUES ($1, $2, $3, $4)")
        .bind(Uuid::now_v7())
        .bind(credential_id)
        .bind(kind)
        .bind(detail)
        .execute(executor)
        .await
        .map(drop)
}
