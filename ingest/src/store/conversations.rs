//! Conversations and their messages, and what a person of the business does in one: pause or resume
//! the bot, and answer the customer (stored here, sent by a worker). State changes go through
//! [`omnidm_shared::transitions`] like the worker's.

use chrono::{DateTime, Utc};
use omnidm_shared::states::{Channel, ConversationState, CredentialStatus};
use omnidm_shared::transitions::{self, Change, Transition, STATE_NOW};
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
    /// Who speaks now: `bot`, `paused`, `escalated` or `elsewhere` (docs/conversation.md); a pause whose
    /// time has passed reads as `bot`.
    pub state: ConversationState,
    /// What put it there (`human_reply`, `handoff`, …).
    pub state_reason: Option<String>,
    /// The AI is quiet until then (a human took over, or an operator paused it).
    pub ai_paused_until: Option<DateTime<Utc>>,
    /// The app that owns the thread when it is `elsewhere`, if Meta said.
    pub thread_owner_app_id: Option<String>,
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
    sqlx::query_as(&format!(
        "SELECT id, channel, account_id, external_user_id, external_username, {STATE_NOW} AS state,
                state_reason, ai_paused_until, thread_owner_app_id, last_inbound_at, created_at, updated_at
         FROM conversations WHERE customer_id = $1 ORDER BY updated_at DESC, id LIMIT $2"
    ))
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

/// What an operator's action needs of a conversation and its account.
#[derive(Debug, sqlx::FromRow)]
pub struct ForOperator {
    /// The conversation.
    pub id: Uuid,
    /// Its tenant (tenant keys are scoped by it).
    pub customer_id: Uuid,
    /// Instagram or Messenger.
    pub channel: Channel,
    /// The business's account.
    pub account_id: String,
    /// The customer (the Send API's recipient).
    pub external_user_id: String,
    /// Who speaks now (an expired pause reads as `bot`).
    pub state: ConversationState,
    /// Meta's time of the customer's last message: the messaging windows count from it.
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// The account.
    pub credential_id: Uuid,
    /// Its health.
    pub credential_status: CredentialStatus,
    /// Which login issued its token.
    pub login: String,
    /// Its Page, when Page-linked.
    pub page_id: Option<String>,
    /// The encrypted token (`None` once disconnected).
    pub access_token_enc: Option<String>,
}

/// A conversation as an operator's action needs it; `None` if there is no such conversation.
pub async fn for_operator(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<ForOperator>> {
    sqlx::query_as(&format!(
        "SELECT cv.id, cv.customer_id, cv.channel, cv.account_id, cv.external_user_id,
                {STATE_NOW} AS state, cv.last_inbound_at, c.id AS credential_id,
                c.status AS credential_status, c.login, c.page_id, c.access_token_enc
         FROM conversations cv JOIN instagram_credentials c ON c.id = cv.credential_id
         WHERE cv.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Applies an operator's change of state (pause, resume); returns the conversation's new state and
/// pause, or `None` if the transition did not apply.
pub async fn change_state(
    pool: &PgPool,
    id: Uuid,
    transition: &Transition,
    change: Change<'_>,
) -> sqlx::Result<Option<(ConversationState, Option<DateTime<Utc>>)>> {
    if !transitions::apply(pool, id, transition, change).await? {
        return Ok(None);
    }
    sqlx::query_as("SELECT state, ai_paused_until FROM conversations WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Stores a person's reply as outbound chunks (`queued`, for a worker to send) and pauses the bot as a
/// person's reply from the app does, in one transaction. Returns the stored chunks, in order.
pub async fn queue_operator_reply(
    pool: &PgPool,
    conversation: &ForOperator,
    chunks: &[String],
    paused_until: DateTime<Utc>,
) -> sqlx::Result<Vec<Message>> {
    let mut tx = pool.begin().await?;
    let reply_id = Uuid::now_v7();
    let ids: Vec<Uuid> = chunks.iter().map(|_| Uuid::now_v7()).collect();
    let indexes: Vec<i32> = (0..chunks.len() as i32).collect();
    let stored: Vec<Message> = sqlx::query_as(
        "INSERT INTO messages (id, conversation_id, channel, account_id, direction, author, kind, text,
                               meta_timestamp, status, reply_id, chunk_index)
         SELECT chunk.id, $1, $2, $3, 'outbound', 'human', 'text', chunk.text, now(), 'queued', $4, chunk.index
         FROM unnest($5::uuid[], $6::text[], $7::int[]) AS chunk (id, text, index)
         RETURNING id, direction, author, kind, text, status, status_reason, external_message_id,
                   meta_timestamp, created_at, deleted_at, edited_at, reactions",
    )
    .bind(conversation.id)
    .bind(conversation.channel)
    .bind(&conversation.account_id)
    .bind(reply_id)
    .bind(&ids)
    .bind(chunks)
    .bind(&indexes)
    .fetch_all(&mut *tx)
    .await?;
    let change = Change {
        paused_until: Some(paused_until),
        ..Change::default()
    };
    transitions::apply(&mut *tx, conversation.id, &transitions::OPERATOR_REPLY, change).await?;
    tx.commit().await?;
    let mut stored = stored;
    stored.sort_by_key(|m| ids.iter().position(|id| *id == m.id));
    Ok(stored)
}

/// Takes back a reply no worker was told about (the broker refused the job), unless a worker already
/// started sending it. Returns how many chunks were withdrawn.
pub async fn withdraw_queued(pool: &PgPool, ids: &[Uuid]) -> sqlx::Result<u64> {
    sqlx::query("DELETE FROM messages WHERE id = ANY($1) AND status = 'queued'")
        .bind(ids)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
}
