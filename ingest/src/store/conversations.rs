//! Conversations and their messages, read-only except for the AI pause an operator sets.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// A conversation in a listing.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// Id (for the messages route).
    pub id: Uuid,
    /// `instagram` or `messenger`.
    pub channel: String,
    /// The business's account.
    pub account_id: String,
    /// The customer's IGSID.
    pub external_user_id: String,
    /// The customer's handle, when known.
    pub external_username: Option<String>,
    /// The AI is quiet until then (a human took over, or an operator paused it).
    pub ai_paused_until: Option<DateTime<Utc>>,
    /// Meta's time of the customer's newest message (a redelivery or a late recovery does not move it).
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// Last activity.
    pub updated_at: DateTime<Utc>,
}

/// A stored message.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Id.
    pub id: Uuid,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `customer`, `ai` or `human`.
    pub author: String,
    /// Event kind (`text`, `attachment`, `story_reply`, …).
    pub kind: String,
    /// Text, when it has one.
    pub text: Option<String>,
    /// Lifecycle status (`pending`, `answered`, `sent`, `delivered`, `parked`, `failed`, …).
    pub status: String,
    /// Why, for `failed`, `parked` and `ignored`.
    pub status_reason: Option<String>,
    /// Meta's message id.
    pub external_message_id: Option<String>,
    /// Meta's timestamp.
    pub meta_timestamp: DateTime<Utc>,
    /// Stored at.
    pub created_at: DateTime<Utc>,
    /// The customer deleted it.
    pub deleted_at: Option<DateTime<Utc>>,
    /// The customer edited it.
    pub edited_at: Option<DateTime<Utc>>,
    /// Reactions on it.
    pub reactions: serde_json::Value,
}

/// A customer's conversations, most recently active first.
pub async fn for_customer(pool: &PgPool, customer_id: Uuid, limit: i64) -> sqlx::Result<Vec<Conversation>> {
    sqlx::query_as(
        "SELECT id, channel, account_id, external_user_id, external_username, ai_paused_until,
                last_inbound_at, created_at, updated_at
         FROM conversations WHERE customer_id = $1 ORDER BY updated_at DESC, id LIMIT $2",
    )
    .bind(customer_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Whether the conversation exists.
pub async fn exists(pool: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
}

/// A conversation's messages in the order the customer experienced them.
pub async fn messages(pool: &PgPool, conversation_id: Uuid, limit: i64) -> sqlx::Result<Vec<Message>> {
    sqlx::query_as(
        "SELECT id, direction, author, kind, text, status, status_reason, external_message_id,
                meta_timestamp, created_at, deleted_at, edited_at, reactions
         FROM messages WHERE conversation_id = $1 ORDER BY meta_timestamp, created_at, chunk_index LIMIT $2",
    )
    .bind(conversation_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Pauses (until `until`) or resumes (`None`) the AI; returns the new value, or `None` if no such
/// conversation.
pub async fn set_ai_pause(
    pool: &PgPool,
    id: Uuid,
    until: Option<DateTime<Utc>>,
) -> sqlx::Result<Option<Option<DateTime<Utc>>>> {
    sqlx::query_scalar(
        "UPDATE conversations SET ai_paused_until = $2, updated_at = now() WHERE id = $1
         RETURNING ai_paused_until",
    )
    .bind(id)
    .bind(until)
    .fetch_optional(pool)
    .await
}
