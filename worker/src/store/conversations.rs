//! Conversations: found or created per (channel, account, user), and their state (who speaks: the bot,
//! a person, another app), changed only through [`omnidm_shared::transitions`]. The reply pass's lease
//! on a conversation is [`super::lease`]'s.

use super::credentials::Credential;
use omnidm_shared::states::Channel;
use omnidm_shared::transitions::HANDOFF;
use sqlx::PgPool;
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

pub use omnidm_shared::transitions::{apply as transition, Change};

/// The conversation between the account and `user` on `channel`, created if this is its first event
/// (a Handover Protocol event can come before any message).
pub async fn ensure(
    pool: &PgPool,
    credential: &Credential,
    channel: Channel,
    user: &str,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar(
        "WITH created AS (
             INSERT INTO conversations (id, customer_id, credential_id, channel, account_id, external_user_id)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (channel, account_id, external_user_id) DO NOTHING
             RETURNING id
         )
         SELECT id FROM created
         UNION ALL
         SELECT id FROM conversations WHERE channel = $4 AND account_id = $5 AND external_user_id = $6
         LIMIT 1",
    )
    .bind(Uuid::now_v7())
    .bind(credential.customer_id)
    .bind(credential.id)
    .bind(channel)
    .bind(&credential.account_id)
    .bind(user)
    .fetch_one(pool)
    .await
}

/// Hands the conversation to a person (the AI called `handoff_to_human`), in one transaction: the state,
/// the account's audit trail, and, when the business wants them, a notification in the outbox
/// ([`super::notifications`]), so none of the three can happen without the others. Returns whether the
/// conversation was still the bot's to hand over.
pub async fn escalate(
    pool: &PgPool,
    conversation_id: Uuid,
    credential: &Credential,
    reason: &str,
    notification: &serde_json::Value,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    if !transition(&mut *tx, conversation_id, &HANDOFF, Change::default()).await? {
        return Ok(false);
    }
    super::credentials::record_event(
        &mut *tx,
        credential.id,
        "escalated",
        serde_json::json!({ "conversation_id": conversation_id, "reason": reason }),
    )
    .await?;
    super::notifications::enqueue(&mut *tx, credential.customer_id, conversation_id, notification).await?;
    tx.commit().await?;
    Ok(true)
}
