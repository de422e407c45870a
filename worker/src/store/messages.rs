//! Messages: inbound ones inserted idempotently (unique Meta id per channel), outbound chunks tracked
//! from `queued` through `sending` to `sent`/`delivered`, and the edits, deletions and reactions Meta
//! reports on them.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A new inbound (or human-sent) message.
#[derive(Debug)]
pub struct NewMessage<'a> {
    /// The conversation.
    pub conversation_id: Uuid,
    /// `instagram` or `messenger`.
    pub channel: &'a str,
    /// Meta's mid: the idempotency key.
    pub mid: &'a str,
    /// `customer` or `human`.
    pub author: &'a str,
    /// The event kind (`message`, `postback`, `unsupported`…).
    pub kind: &'a str,
    /// What the AI reads.
    pub text: Option<&'a str>,
    /// The raw event as Meta sent it.
    pub raw: &'a str,
    /// Meta's timestamp (ordering).
    pub meta_timestamp: DateTime<Utc>,
    /// `pending` (awaits a reply), `ignored` (recorded only), `delivered` (a human's message).
    pub status: &'a str,
    /// Why, for `ignored`.
    pub status_reason: Option<&'a str>,
}

/// Inserts the message unless Meta's id is already stored. Returns whether it was new.
pub async fn insert(pool: &PgPool, m: &NewMessage<'_>) -> sqlx::Result<bool> {
    let direction = if m.author == "customer" {
        "inbound"
    } else {
        "outbound"
    };
    let result = sqlx::query(
        "INSERT INTO messages (id, conversation_id, channel, external_message_id, direction, author, kind, text, raw,
                               meta_timestamp, status, status_reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12)
         ON CONFLICT (channel, external_message_id) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(m.conversation_id)
    .bind(m.channel)
    .bind(m.mid)
    .bind(direction)
    .bind(m.author)
    .bind(m.kind)
    .bind(m.text)
    .bind(m.raw)
    .bind(m.meta_timestamp)
    .bind(m.status)
    .bind(m.status_reason)
    .execute(pool)
    .await?;
    if result.rows_affected() == 1 {
        sqlx::query("UPDATE conversations SET last_inbound_at = now(), updated_at = now() WHERE id = $1")
            .bind(m.conversation_id)
            .execute(pool)
            .await?;
    }
    Ok(result.rows_affected() == 1)
}

/// The customer deleted a message: keep the row (history), mark it, and stop it from being answered.
pub async fn mark_deleted(pool: &PgPool, channel: &str, mid: &str) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE messages SET deleted_at = COALESCE(deleted_at, now()), updated_at = now(),
                status = CASE WHEN status = 'pending' THEN 'ignored' ELSE status END,
                status_reason = CASE WHEN status = 'pending' THEN 'deleted' ELSE status_reason END
         WHERE channel = $1 AND external_message_id = $2",
    )
    .bind(channel)
    .bind(mid)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// The customer edited a message: the new text is what the AI reads from now on.
pub async fn edit(pool: &PgPool, channel: &str, mid: &str, text: &str) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE messages SET text = $3, edited_at = now(), updated_at = now()
         WHERE channel = $1 AND external_message_id = $2",
    )
    .bind(channel)
    .bind(mid)
    .bind(text)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Stores a reaction on the message it reacts to (one per user; an unreact removes it).
pub async fn react(
    pool: &PgPool,
    channel: &str,
    mid: &str,
    user: &str,
    reaction: Option<(&str, Option<&str>)>,
) -> sqlx::Result<bool> {
    let entry = reaction
        .map(|(reaction, emoji)| serde_json::json!({"user": user, "reaction": reaction, "emoji": emoji}));
    let r = sqlx::query(
        "UPDATE messages
         SET reactions = COALESCE((SELECT jsonb_agg(r) FROM jsonb_array_elements(reactions) r WHERE r->>'user' <> $3), '[]'::jsonb)
                         || CASE WHEN $4::jsonb IS NULL THEN '[]'::jsonb ELSE jsonb_build_array($4::jsonb) END,
             updated_at = now()
         WHERE channel = $1 AND external_message_id = $2",
    )
    .bind(channel)
    .bind(mid)
    .bind(user)
    .bind(entry)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// An inbound message waiting for a reply.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Pending {
    /// Row id.
    pub id: Uuid,
    /// Meta's timestamp.
    pub meta_timestamp: DateTime<Utc>,
    /// When we stored it (the debounce clock).
    pub created_at: DateTime<Utc>,
    /// What the customer wrote (or how the AI should read an attachment).
    pub text: Option<String>,
}

/// Every unanswered inbound message, in the order the customer wrote them.
pub async fn pending(pool: &PgPool, conversation_id: Uuid) -> sqlx::Result<Vec<Pending>> {
    sqlx::query_as(
        "SELECT id, meta_timestamp, created_at, text FROM messages
         WHERE conversation_id = $1 AND direction = 'inbound' AND status = 'pending' AND deleted_at IS NULL
         ORDER BY meta_timestamp, created_at",
    )
    .bind(conversation_id)
    .fetch_all(pool)
    .await
}

/// Marks pending messages as not to be answered (e.g. a human is handling the conversation).
pub async fn ignore_pending(pool: &PgPool, ids: &[Uuid], reason: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE messages SET status = 'ignored', status_reason = $2, updated_at = now() WHERE id = ANY($1) AND status = 'pending'")
        .bind(ids)
        .bind(reason)
        .execute(pool)
        .await
        .map(drop)
}

/// One line of conversation history for the AI.
#[derive(Debug, sqlx::FromRow)]
pub struct HistoryLine {
    /// `customer`, `ai` or `human`.
    pub author: String,
    /// What was said.
    pub text: String,
}

/// The last `limit` messages with text, oldest first, leaving out deleted and failed ones and the
/// pending ones (the reply pass puts exactly the messages it answers last, after this history: a message
/// Meta delivered late must read as a question to answer, not as something said before our last reply).
pub async fn history(pool: &PgPool, conversation_id: Uuid, limit: u32) -> sqlx::Result<Vec<HistoryLine>> {
    let mut lines: Vec<HistoryLine> = sqlx::query_as(
        "SELECT author, text FROM messages
         WHERE conversation_id = $1 AND text IS NOT NULL AND deleted_at IS NULL
           AND status NOT IN ('failed') AND NOT (direction = 'inbound' AND status IN ('ignored', 'pending'))
         ORDER BY meta_timestamp DESC, created_at DESC, chunk_index DESC NULLS LAST
         LIMIT $2",
    )
    .bind(conversation_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    lines.reverse();
    Ok(lines)
}

/// Stores an AI answer as outbound chunks and marks the messages it answers, in one transaction: after
/// it commits, a crash resumes *sending* these chunks instead of asking the AI again.
pub async fn create_reply(
    pool: &PgPool,
    conversation_id: Uuid,
    channel: &str,
    answers: &[Uuid],
    chunks: &[String],
) -> sqlx::Result<Uuid> {
    let reply_id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO replies (id, conversation_id) VALUES ($1, $2)")
        .bind(reply_id)
        .bind(conversation_id)
        .execute(&mut *tx)
        .await?;
    for (index, chunk) in chunks.iter().enumerate() {
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, channel, direction, author, kind, text, meta_timestamp, status, reply_id, chunk_index)
             VALUES ($1, $2, $3, 'outbound', 'ai', 'message', $4, now(), 'queued', $5, $6)",
        )
        .bind(Uuid::now_v7())
        .bind(conversation_id)
        .bind(channel)
        .bind(chunk)
        .bind(reply_id)
        .bind(index as i32)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE messages SET status = 'answered', reply_id = $2, updated_at = now() WHERE id = ANY($1) AND status = 'pending'")
        .bind(answers)
        .bind(reply_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(reply_id)
}

/// An outbound chunk not yet confirmed sent.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Unsent {
    /// Row id.
    pub id: Uuid,
    /// The chunk's text.
    pub text: String,
    /// `queued` or `sending`.
    pub status: String,
    /// Last send attempt, for `sending` chunks whose outcome is unknown.
    pub send_attempted_at: Option<DateTime<Utc>>,
    /// When the reply was created (end-to-end latency is measured to the send).
    pub reply_id: Option<Uuid>,
}

/// Chunks still to send, in order (oldest reply first, then chunk order).
pub async fn unsent(pool: &PgPool, conversation_id: Uuid) -> sqlx::Result<Vec<Unsent>> {
    sqlx::query_as(
        "SELECT id, text, status, send_attempted_at, reply_id FROM messages
         WHERE conversation_id = $1 AND direction = 'outbound' AND author = 'ai' AND status IN ('queued', 'sending')
         ORDER BY created_at, chunk_index",
    )
    .bind(conversation_id)
    .fetch_all(pool)
    .await
}

/// Records that a send is about to be attempted, *before* calling Meta, so an echo that arrives before
/// the Send API answers is still recognised as ours.
pub async fn mark_sending(pool: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE messages SET status = 'sending', send_attempted_at = now(), updated_at = now() WHERE id = $1 AND status IN ('queued', 'sending')")
        .bind(id)
        .execute(pool)
        .await
        .map(drop)
}

/// Meta accepted the chunk. An echo may have marked it `delivered` already; that stays.
pub async fn mark_sent(pool: &PgPool, id: Uuid, mid: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE messages SET external_message_id = $2, updated_at = now(),
                status = CASE WHEN status = 'delivered' THEN 'delivered' ELSE 'sent' END
         WHERE id = $1",
    )
    .bind(id)
    .bind(mid)
    .execute(pool)
    .await
    .map(drop)
}

/// Sets the status of chunks (back to `queued`, or `parked`/`failed` with a reason).
pub async fn set_status(pool: &PgPool, ids: &[Uuid], status: &str, reason: Option<&str>) -> sqlx::Result<()> {
    sqlx::query("UPDATE messages SET status = $2, status_reason = $3, updated_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .bind(status)
        .bind(reason)
        .execute(pool)
        .await
        .map(drop)
}

/// An echo carries a mid we already know: our own chunk was delivered.
pub async fn mark_delivered_by_mid(pool: &PgPool, channel: &str, mid: &str) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE messages SET status = CASE WHEN author = 'ai' THEN 'delivered' ELSE status END, updated_at = now()
         WHERE channel = $1 AND external_message_id = $2 AND direction = 'outbound'",
    )
    .bind(channel)
    .bind(mid)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// An echo arrived before the Send API answered: match it to our `sending` chunk by text.
pub async fn match_sending_echo(
    pool: &PgPool,
    conversation_id: Uuid,
    text: &str,
    mid: &str,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE messages SET status = 'delivered', external_message_id = $3, updated_at = now()
         WHERE id = (SELECT id FROM messages
                     WHERE conversation_id = $1 AND direction = 'outbound' AND author = 'ai'
                       AND status = 'sending' AND text = $2 AND external_message_id IS NULL
                     ORDER BY created_at, chunk_index LIMIT 1)",
    )
    .bind(conversation_id)
    .bind(text)
    .bind(mid)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Whether one of our chunks is mid-send in the conversation (an unmatched echo may still be ours).
pub async fn has_sending(pool: &PgPool, conversation_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1 AND direction = 'outbound'
                        AND author = 'ai' AND status = 'sending' AND external_message_id IS NULL)",
    )
    .bind(conversation_id)
    .fetch_one(pool)
    .await
}

/// Meta's standard messaging window: a reply must follow the customer's last message within 24 hours.
pub const MESSAGING_WINDOW_HOURS: i32 = 24;

/// After a reconnect: replies parked while the token was dead go back to `queued` where the customer's
/// last message is still inside the 24-hour window; older ones (and unanswered messages that old) are
/// marked failed `outside_window`, since Meta would refuse them. Returns (requeued, expired).
pub async fn unpark(pool: &PgPool, credential_id: Uuid) -> sqlx::Result<(u64, u64)> {
    let mut tx = pool.begin().await?;
    // Window by Meta's timestamp of the customer's newest message, not by when we stored it.
    let within = "(SELECT max(i.meta_timestamp) FROM messages i
                   WHERE i.conversation_id = m.conversation_id AND i.direction = 'inbound')
                  > now() - make_interval(hours => $2)";
    let requeued = sqlx::query(&format!(
        "UPDATE messages m SET status = 'queued', status_reason = NULL, updated_at = now()
         FROM conversations c
         WHERE m.conversation_id = c.id AND c.credential_id = $1 AND m.status = 'parked' AND {within}"
    ))
    .bind(credential_id)
    .bind(MESSAGING_WINDOW_HOURS)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let expired = sqlx::query(&format!(
        "UPDATE messages m SET status = 'failed', status_reason = 'outside_window', updated_at = now()
         FROM conversations c
         WHERE m.conversation_id = c.id AND c.credential_id = $1
           AND (m.status = 'parked' OR (m.direction = 'inbound' AND m.status = 'pending'))
           AND NOT {within}"
    ))
    .bind(credential_id)
    .bind(MESSAGING_WINDOW_HOURS)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok((requeued, expired))
}

/// Whether a message with Meta's id is stored (the reconciler's "do we have it?").
pub async fn exists(pool: &PgPool, channel: &str, mid: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE channel = $1 AND external_message_id = $2)",
    )
    .bind(channel)
    .bind(mid)
    .fetch_one(pool)
    .await
}
