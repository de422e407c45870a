//! A conversation's work: the customer messages still to answer, our chunks still to send, and the
//! history the AI reads. One query shape ([`work_rows`]) serves the lease statement and plain reads.

use chrono::{DateTime, Utc};
use omnidm_shared::policy::MessageKind;
use omnidm_shared::states::{Author, Direction, MessageStatus};
use sqlx::PgPool;
use uuid::Uuid;

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
    /// What it is, for the reply policy.
    pub kind: MessageKind,
}

/// Closes pending messages without a reply: `ignored` (recorded only: a person has the conversation,
/// the policy says so) or `failed` (cannot be answered, e.g. too long for the AI's context), with why.
/// Only messages still pending change.
pub async fn close_pending(
    pool: &PgPool,
    ids: &[Uuid],
    status: MessageStatus,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE messages SET status = $2, status_reason = $3, updated_at = now()
         WHERE id = ANY($1) AND status = 'pending'",
    )
    .bind(ids)
    .bind(status)
    .bind(reason)
    .execute(pool)
    .await
    .map(drop)
}

/// One line of conversation history for the AI.
#[derive(Debug)]
pub struct HistoryLine {
    /// Who said it.
    pub author: Author,
    /// What was said.
    pub text: String,
    /// When we stored it.
    pub created_at: DateTime<Utc>,
    /// The first chunk of one of our replies (counts replies, not messages).
    pub starts_reply: bool,
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
         OR (m.direction = 'outbound' AND m.status IN ('queued', 'sending')))";

/// An outbound chunk not yet confirmed sent.
#[derive(Debug, Clone)]
pub struct Unsent {
    /// Row id.
    pub id: Uuid,
    /// The assistant's, or a person's (an operator reply): decides the messaging type it goes with.
    pub author: Author,
    /// The chunk's text.
    pub text: String,
    /// `queued` or `sending`.
    pub status: MessageStatus,
    /// Last send attempt, for `sending` chunks whose outcome is unknown.
    pub send_attempted_at: Option<DateTime<Utc>>,
    /// Marked `sending` by this pass's own [`super::outbound::create_reply`], not yet attempted: send it
    /// without another round trip, and do not mistake it for a send whose outcome is unknown.
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

/// One row of a conversation's work list or history, as [`work_rows`] reads it (and as the lease
/// statement returns it, in JSON).
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct WorkRow {
    /// From the work half of the query (else the history half).
    is_work: bool,
    id: Uuid,
    direction: Direction,
    author: Author,
    kind: String,
    text: Option<String>,
    status: MessageStatus,
    meta_timestamp: DateTime<Utc>,
    created_at: DateTime<Utc>,
    send_attempted_at: Option<DateTime<Utc>>,
    chunk_index: Option<i32>,
}

/// The query reading a conversation's [`WorkRow`]s: its work, then its last `limit` messages of
/// history. `conversation` and `limit` are SQL expressions (a parameter, or a column of an outer query).
pub(crate) fn work_rows(conversation: &str, limit: &str) -> String {
    const COLUMNS: &str =
        "id, direction, author, kind, text, status, meta_timestamp, created_at, send_attempted_at, chunk_index";
    format!(
        "SELECT true AS is_work, {COLUMNS} FROM messages m WHERE m.conversation_id = {conversation} AND {WORK}
         UNION ALL
         (SELECT false, {COLUMNS} FROM messages h WHERE h.conversation_id = {conversation} AND {HISTORY}
          ORDER BY h.meta_timestamp DESC, h.created_at DESC, h.chunk_index DESC NULLS LAST
          LIMIT {limit})"
    )
}

/// A conversation's [`Work`] in one round trip: the messages still to answer or send, and the last
/// `history` messages of context (read even when nothing is pending; they cost little next to a second
/// round trip on every reply). The reply pass reads the same with its lease
/// ([`super::lease::take_many`]); this form is for looking without taking.
pub async fn work(pool: &PgPool, conversation_id: Uuid, history: u32) -> sqlx::Result<Work> {
    let rows: Vec<WorkRow> = sqlx::query_as(&work_rows("$1", "$2"))
        .bind(conversation_id)
        .bind(i64::from(history))
        .fetch_all(pool)
        .await?;
    Ok(Work::from_rows(rows))
}

impl Work {
    /// Sorts the rows of a work query into what is pending, what is unsent and the history.
    pub(crate) fn from_rows(rows: Vec<WorkRow>) -> Self {
        let (work, mut context): (Vec<WorkRow>, Vec<WorkRow>) = rows.into_iter().partition(|row| row.is_work);
        // Oldest first; the inverse of the query's order, which a UNION does not promise to keep.
        context.sort_by_key(|row| (row.meta_timestamp, row.created_at, row.chunk_index));
        let history = context
            .into_iter()
            .filter_map(|row| {
                row.text.map(|text| HistoryLine {
                    author: row.author,
                    text,
                    created_at: row.created_at,
                    starts_reply: row.direction == Direction::Outbound && row.chunk_index == Some(0),
                })
            })
            .collect();
        let (inbound, mut outbound): (Vec<WorkRow>, Vec<WorkRow>) = work
            .into_iter()
            .partition(|row| row.direction == Direction::Inbound);
        let mut pending: Vec<Pending> = inbound
            .into_iter()
            .map(|row| Pending {
                id: row.id,
                meta_timestamp: row.meta_timestamp,
                created_at: row.created_at,
                kind: MessageKind::from_stored(&row.kind),
                text: row.text,
            })
            .collect();
        pending.sort_by_key(|p| (p.meta_timestamp, p.created_at));
        outbound.sort_by_key(|row| (row.created_at, row.chunk_index));
        let unsent = outbound
            .into_iter()
            .map(|row| Unsent {
                id: row.id,
                author: row.author,
                text: row.text.unwrap_or_default(),
                status: row.status,
                send_attempted_at: row.send_attempted_at,
                claimed: false,
            })
            .collect();
        Self {
            pending,
            unsent,
            history,
        }
    }
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
