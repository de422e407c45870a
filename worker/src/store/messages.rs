//! Messages: inbound ones inserted idempotently (unique Meta id per channel), outbound chunks tracked
//! from `queued` through `sending` to `sent`/`delivered`, and the edits, deletions and reactions Meta
//! reports on them.

use super::conversations::{Lease, LEASE_AVAILABLE, RELAXED_COMMIT, TAKE_LEASE};
use super::credentials::Credential;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A new inbound (or human-sent) message.
#[derive(Debug)]
pub struct NewMessage<'a> {
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

impl NewMessage<'_> {
    fn direction(&self) -> &'static str {
        if self.author == "customer" {
            "inbound"
        } else {
            "outbound"
        }
    }
}

/// Where a stored message went.
#[derive(Debug, sqlx::FromRow)]
pub struct Stored {
    /// Its conversation (created on first contact).
    pub conversation_id: Uuid,
    /// False when Meta's id was already stored: a redelivery, nothing changed.
    pub inserted: bool,
}

/// Stores a message of the conversation between the account and `external_user_id`: upserts the
/// conversation (noting inbound activity for a customer's message) and inserts the message unless Meta's
/// id is already stored, in one statement, since every DM takes this path.
///
/// The conversation's `last_inbound_at` is the newest customer message's Meta time (never in the future),
/// so a redelivery or a message recovered hours later by the reconciler does not make the customer look
/// recently active.
pub async fn store(
    pool: &PgPool,
    credential: &Credential,
    external_user_id: &str,
    m: &NewMessage<'_>,
) -> sqlx::Result<Stored> {
    sqlx::query_as(
        "WITH cv AS (
             INSERT INTO conversations (id, customer_id, credential_id, channel, account_id, external_user_id,
                                        last_inbound_at)
             VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $9 = 'inbound' THEN LEAST($14, now()) END)
             ON CONFLICT (channel, account_id, external_user_id) DO UPDATE SET updated_at = now(),
                 last_inbound_at = CASE WHEN $9 = 'inbound'
                                        THEN GREATEST(conversations.last_inbound_at, LEAST($14, now()))
                                        ELSE conversations.last_inbound_at END
             RETURNING id
         ), m AS (
             INSERT INTO messages (id, conversation_id, channel, external_message_id, direction, author, kind,
                                   text, raw, meta_timestamp, status, status_reason)
             SELECT $7, cv.id, $4, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16 FROM cv
             ON CONFLICT (channel, external_message_id) DO NOTHING
             RETURNING id
         )
         SELECT cv.id AS conversation_id, EXISTS (SELECT 1 FROM m) AS inserted FROM cv",
    )
    .bind(Uuid::now_v7())
    .bind(credential.customer_id)
    .bind(credential.id)
    .bind(&credential.channel)
    .bind(&credential.account_id)
    .bind(external_user_id)
    .bind(Uuid::now_v7())
    .bind(m.mid)
    .bind(m.direction())
    .bind(m.author)
    .bind(m.kind)
    .bind(m.text)
    .bind(m.raw)
    .bind(m.meta_timestamp)
    .bind(m.status)
    .bind(m.status_reason)
    .fetch_one(pool)
    .await
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
#[derive(Debug, Clone)]
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
#[derive(Debug)]
pub struct HistoryLine {
    /// `customer`, `ai` or `human`.
    pub author: String,
    /// What was said.
    pub text: String,
}

/// What the AI reads as the conversation so far: messages with text, leaving out deleted and failed ones
/// and the pending ones (the reply pass puts exactly the messages it answers last, after this history: a
/// message Meta delivered late must read as a question to answer, not as something said before our last
/// reply). The table alias must be `h`.
const HISTORY: &str = "h.text IS NOT NULL AND h.deleted_at IS NULL AND h.status <> 'failed'
    AND NOT (h.direction = 'inbound' AND h.status IN ('ignored', 'pending'))";

/// A message that still needs something from the reply pass: an inbound one awaiting an answer, or one
/// of our outbound chunks not yet confirmed sent. Its first condition is the partial index
/// `messages_pending`, so every query using it is an index scan. The table alias must be `m`.
pub(crate) const WORK: &str = "m.status IN ('pending', 'queued', 'sending')
    AND ((m.direction = 'inbound' AND m.status = 'pending' AND m.deleted_at IS NULL)
         OR (m.direction = 'outbound' AND m.author = 'ai' AND m.status IN ('queued', 'sending')))";

/// An outbound chunk not yet confirmed sent.
#[derive(Debug, Clone)]
pub struct Unsent {
    /// Row id.
    pub id: Uuid,
    /// The chunk's text.
    pub text: String,
    /// `queued` or `sending`.
    pub status: String,
    /// Last send attempt, for `sending` chunks whose outcome is unknown.
    pub send_attempted_at: Option<DateTime<Utc>>,
    /// Marked `sending` by this pass's own [`create_reply`], not yet attempted: send it without another
    /// round trip, and do not mistake it for a send whose outcome is unknown.
    pub claimed: bool,
}

/// What a conversation's reply pass has left to do.
#[derive(Debug, Default)]
pub struct Work {
    /// Unanswered inbound messages, in the order the customer wrote them.
    pub pending: Vec<Pending>,
    /// Chunks still to send, in order (oldest reply first, then chunk order).
    pub unsent: Vec<Unsent>,
    /// The last messages of the conversation, oldest first, for the AI (see [`HISTORY`]).
    pub history: Vec<HistoryLine>,
}

#[derive(sqlx::FromRow)]
struct WorkRow {
    /// From the work half of the query (else the history half).
    is_work: bool,
    id: Uuid,
    direction: String,
    author: String,
    text: Option<String>,
    status: String,
    meta_timestamp: DateTime<Utc>,
    created_at: DateTime<Utc>,
    send_attempted_at: Option<DateTime<Utc>>,
    chunk_index: Option<i32>,
}

/// A conversation's [`Work`] in one round trip: the messages still to answer or send, and the last
/// `history` messages of context (read even when nothing is pending; they cost little next to a second
/// round trip on every reply).
pub async fn work(pool: &PgPool, conversation_id: Uuid, history: u32) -> sqlx::Result<Work> {
    const COLUMNS: &str =
        "id, direction, author, text, status, meta_timestamp, created_at, send_attempted_at, chunk_index";
    let rows: Vec<WorkRow> = sqlx::query_as(&format!(
        "SELECT true AS is_work, {COLUMNS} FROM messages m WHERE m.conversation_id = $1 AND {WORK}
         UNION ALL
         (SELECT false, {COLUMNS} FROM messages h WHERE h.conversation_id = $1 AND {HISTORY}
          ORDER BY h.meta_timestamp DESC, h.created_at DESC, h.chunk_index DESC NULLS LAST
          LIMIT $2)"
    ))
    .bind(conversation_id)
    .bind(i64::from(history))
    .fetch_all(pool)
    .await?;
    let (work, mut context): (Vec<WorkRow>, Vec<WorkRow>) = rows.into_iter().partition(|row| row.is_work);
    // Oldest first; the inverse of the query's order, which a UNION does not promise to keep.
    context.sort_by_key(|row| (row.meta_timestamp, row.created_at, row.chunk_index));
    let history = context
        .into_iter()
        .filter_map(|row| {
            row.text.map(|text| HistoryLine {
                author: row.author,
                text,
            })
        })
        .collect();
    let (inbound, mut outbound): (Vec<WorkRow>, Vec<WorkRow>) =
        work.into_iter().partition(|row| row.direction == "inbound");
    let mut pending: Vec<Pending> = inbound
        .into_iter()
        .map(|row| Pending {
            id: row.id,
            meta_timestamp: row.meta_timestamp,
            created_at: row.created_at,
            text: row.text,
        })
        .collect();
    pending.sort_by_key(|p| (p.meta_timestamp, p.created_at));
    outbound.sort_by_key(|row| (row.created_at, row.chunk_index));
    let unsent = outbound
        .into_iter()
        .map(|row| Unsent {
            id: row.id,
            text: row.text.unwrap_or_default(),
            status: row.status,
            send_attempted_at: row.send_attempted_at,
            claimed: false,
        })
        .collect();
    Ok(Work {
        pending,
        unsent,
        history,
    })
}

/// Stores an AI answer as outbound chunks and marks the messages it answers, in one statement that
/// first renews the lease: after it commits, a crash resumes *sending* these chunks instead of asking
/// the AI again. With `claim_first` (the account can send right now) the first chunk is stored already
/// `sending`, and the statement commits durably, so the send that follows needs no `mark_sending` round
/// trip and its echo is recognised even if it overtakes the Send API's answer. Without it the commit is
/// relaxed ([`RELAXED_COMMIT`]; the `mark_sending` before any send flushes it). Returns the chunks to
/// send, or `None` when the lease was lost during a very slow AI call (another pass took over and will
/// answer; nothing was written).
pub async fn create_reply(
    pool: &PgPool,
    lease: &Lease,
    channel: &str,
    answers: &[Uuid],
    chunks: &[String],
    claim_first: bool,
) -> sqlx::Result<Option<Vec<Unsent>>> {
    let reply_id = Uuid::now_v7();
    let ids: Vec<Uuid> = chunks.iter().map(|_| Uuid::now_v7()).collect();
    let commit = if claim_first { "true" } else { RELAXED_COMMIT };
    let leased: bool = sqlx::query_scalar(&format!(
        "WITH lease AS (
             UPDATE conversations cv SET {TAKE_LEASE}
             WHERE cv.id = $1 AND {LEASE_AVAILABLE} AND {commit}
             RETURNING cv.id
         ), chunks AS (
             INSERT INTO messages (id, conversation_id, channel, direction, author, kind, text, meta_timestamp,
                                   status, send_attempted_at, reply_id, chunk_index)
             SELECT chunk.id, lease.id, $5, 'outbound', 'ai', 'message', chunk.text, now(),
                    CASE WHEN $9 AND chunk.n = 1 THEN 'sending' ELSE 'queued' END,
                    CASE WHEN $9 AND chunk.n = 1 THEN now() END,
                    $4, (chunk.n - 1)::int
             FROM lease, unnest($6::uuid[], $7::text[]) WITH ORDINALITY AS chunk (id, text, n)
         ), answered AS (
             UPDATE messages SET status = 'answered', reply_id = $4, updated_at = now()
             WHERE id = ANY($8) AND status = 'pending' AND EXISTS (SELECT 1 FROM lease)
         )
         SELECT EXISTS (SELECT 1 FROM lease)"
    ))
    .bind(lease.conversation_id)
    .bind(lease.owner)
    .bind(lease.ttl.as_secs_f64())
    .bind(reply_id)
    .bind(channel)
    .bind(&ids)
    .bind(chunks)
    .bind(answers)
    .bind(claim_first)
    .fetch_one(pool)
    .await?;
    Ok(leased.then(|| {
        ids.into_iter()
            .zip(chunks)
            .enumerate()
            .map(|(n, (id, text))| {
                let claimed = claim_first && n == 0;
                Unsent {
                    id,
                    text: text.clone(),
                    status: if claimed { "sending" } else { "queued" }.into(),
                    send_attempted_at: None,
                    claimed,
                }
            })
            .collect()
    }))
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

/// Marks chunk `$1` sent as Meta's message `$2`. An echo may have marked it `delivered` already; that stays.
const MARK_SENT: &str = "UPDATE messages SET external_message_id = $2, updated_at = now(),
        status = CASE WHEN status = 'delivered' THEN 'delivered' ELSE 'sent' END
    WHERE id = $1";

/// Meta accepted the chunk.
pub async fn mark_sent(pool: &PgPool, id: Uuid, mid: &str) -> sqlx::Result<()> {
    sqlx::query(MARK_SENT)
        .bind(id)
        .bind(mid)
        .execute(pool)
        .await
        .map(drop)
}

/// The usual end of a reply in one round trip: marks its last chunk sent and gives the conversation's
/// lease back if nothing else is left to do (as [`super::conversations::release_if_idle`]; that chunk
/// counts as done). Returns whether the lease was given back; `false`: something arrived meanwhile and
/// the holder goes round again. The chunk is marked sent either way.
pub async fn mark_sent_and_release_if_idle(
    pool: &PgPool,
    lease: &Lease,
    id: Uuid,
    mid: &str,
) -> sqlx::Result<bool> {
    let released = sqlx::query(&format!(
        "WITH sent AS ({MARK_SENT})
         UPDATE conversations cv SET lease_owner = NULL, lease_expires_at = NULL
         WHERE cv.id = $3 AND cv.lease_owner = $4
           AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = cv.id AND m.id <> $1 AND {WORK})"
    ))
    .bind(id)
    .bind(mid)
    .bind(lease.conversation_id)
    .bind(lease.owner)
    .execute(pool)
    .await?;
    Ok(released.rows_affected() == 1)
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

/// Recognises an echo as one of our outbound messages and marks it: by Meta's id, or, for an echo that
/// overtook the Send API's answer, as the oldest of our `sending` chunks with the same text in the
/// conversation with `user`. Our AI chunks become `delivered`; a human's message is only recognised (a
/// redelivered echo). One statement on purpose: checked in two, an echo read between them would miss
/// both (the chunk turning from `sending` to `sent` in between) and be taken for a human's reply.
/// Whichever snapshot the statement reads, it finds the chunk; if the Send API's answer is being
/// recorded at that moment, the update waits for it and applies to the committed row.
pub async fn mark_echo_delivered(
    pool: &PgPool,
    channel: &str,
    account_id: &str,
    user: Option<&str>,
    mid: &str,
    text: Option<&str>,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "WITH target AS (
             SELECT m.id FROM messages m
             WHERE m.channel = $1 AND m.direction = 'outbound'
               AND (m.external_message_id = $2
                    OR (m.author = 'ai' AND m.status = 'sending' AND m.external_message_id IS NULL
                        AND m.text = $3
                        AND m.conversation_id = (SELECT c.id FROM conversations c
                                                 WHERE c.channel = $1 AND c.account_id = $4
                                                   AND c.external_user_id = $5)))
             ORDER BY m.external_message_id IS NOT DISTINCT FROM $2 DESC, m.created_at, m.chunk_index
             LIMIT 1
         )
         UPDATE messages m
         SET status = CASE WHEN m.author = 'ai' THEN 'delivered' ELSE m.status END,
             external_message_id = $2, updated_at = now()
         FROM target WHERE m.id = target.id",
    )
    .bind(channel)
    .bind(mid)
    .bind(text)
    .bind(account_id)
    .bind(user)
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
