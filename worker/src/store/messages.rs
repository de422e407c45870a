//! Messages: inbound ones inserted idempotently (unique Meta id per account), outbound chunks tracked
//! from `queued` through `sending` to `sent`/`delivered`, and the edits, deletions and reactions Meta
//! reports on them.

use super::batch::only;
use super::conversations::{Lease, LEASE_AVAILABLE, RELAXED_COMMIT, TAKE_LEASE};
use super::credentials::Credential;
use chrono::{DateTime, Utc};
use omnidm_shared::policy::MessageKind;
use omnidm_shared::states::{Author, Channel, Direction, MessageStatus};
use sqlx::PgPool;
use uuid::Uuid;

/// A new inbound (or human-sent) message.
#[derive(Debug)]
pub struct NewMessage<'a> {
    /// Meta's mid: the idempotency key (unique per account).
    pub mid: &'a str,
    /// The customer, or a person of the business (an echo from the app).
    pub author: Author,
    /// What it is, for the reply policy.
    pub kind: MessageKind,
    /// What the AI reads.
    pub text: Option<&'a str>,
    /// The raw event as Meta sent it.
    pub raw: &'a str,
    /// Meta's timestamp (ordering).
    pub meta_timestamp: DateTime<Utc>,
    /// `pending` (awaits a reply), `ignored` (recorded only), `delivered` (a human's message).
    pub status: MessageStatus,
    /// Why, for `ignored`.
    pub status_reason: Option<&'a str>,
}

impl NewMessage<'_> {
    fn direction(&self) -> Direction {
        if self.author == Author::Customer {
            Direction::Inbound
        } else {
            Direction::Outbound
        }
    }
}

/// Where a stored message went.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    /// Its conversation (created on first contact).
    pub conversation_id: Uuid,
    /// False when Meta's id was already stored: a redelivery, nothing changed.
    pub inserted: bool,
}

/// A [`NewMessage`] with its conversation's key, owned, so that calls from many jobs can be stored by
/// one statement ([`store_many`], through [`super::batch::Batcher`]).
#[derive(Debug, Clone)]
pub struct ToStore {
    customer_id: Uuid,
    credential_id: Uuid,
    channel: String,
    account_id: String,
    external_user_id: String,
    mid: String,
    direction: Direction,
    author: Author,
    kind: MessageKind,
    text: Option<String>,
    raw: String,
    meta_timestamp: DateTime<Utc>,
    status: MessageStatus,
    status_reason: Option<String>,
}

impl ToStore {
    /// The message `m` of the conversation between the account and `external_user_id` on `channel`
    /// (an account linked to a Page talks on Instagram and on Messenger).
    pub fn new(
        credential: &Credential,
        channel: Channel,
        external_user_id: &str,
        m: &NewMessage<'_>,
    ) -> Self {
        Self {
            customer_id: credential.customer_id,
            credential_id: credential.id,
            channel: channel.as_str().to_owned(),
            account_id: credential.account_id.clone(),
            external_user_id: external_user_id.to_owned(),
            mid: m.mid.to_owned(),
            direction: m.direction(),
            author: m.author,
            kind: m.kind,
            text: m.text.map(str::to_owned),
            raw: m.raw.to_owned(),
            meta_timestamp: m.meta_timestamp,
            status: m.status,
            status_reason: m.status_reason.map(str::to_owned),
        }
    }

    fn conversation_key(&self) -> (&str, &str, &str) {
        (&self.channel, &self.account_id, &self.external_user_id)
    }
}

/// Stores a message of the conversation between the account and `external_user_id` (see
/// [`store_many`]; jobs go through the batcher in their context, this is the same statement for one).
pub async fn store(
    pool: &PgPool,
    credential: &Credential,
    channel: Channel,
    external_user_id: &str,
    m: &NewMessage<'_>,
) -> sqlx::Result<Stored> {
    store_many(pool, vec![ToStore::new(credential, channel, external_user_id, m)])
        .await
        .and_then(only)
}

/// Stores messages in one statement, since every DM takes this path: upserts each conversation (noting
/// inbound activity for a customer's message) and inserts each message unless Meta's id is already
/// stored. Returns one [`Stored`] per message, in order; of two messages with the same Meta id, only
/// one is `inserted`.
///
/// A conversation's `last_inbound_at` is its newest customer message's Meta time (never in the
/// future), so a redelivery or a message recovered hours later by the reconciler does not make the
/// customer look recently active.
///
/// Rows are written in key order (conversations, then Meta ids), so two batches sharing rows lock them
/// in the same order instead of deadlocking.
pub async fn store_many(pool: &PgPool, rows: Vec<ToStore>) -> sqlx::Result<Vec<Stored>> {
    let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
    let order: Vec<usize> = {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|&a, &b| (&rows[a].account_id, &rows[a].mid).cmp(&(&rows[b].account_id, &rows[b].mid)));
        order
    };
    // One row per conversation (PostgreSQL refuses to upsert a row twice in one statement): the first
    // message naming it, and the newest customer message's time.
    let mut conversations = std::collections::BTreeMap::new();
    for row in &rows {
        let inbound = (row.direction == Direction::Inbound).then_some(row.meta_timestamp);
        let entry: &mut (&ToStore, Option<DateTime<Utc>>) =
            conversations.entry(row.conversation_key()).or_insert((row, None));
        entry.1 = entry.1.max(inbound);
    }
    let mut cv = ConversationColumns::default();
    for (&(channel, account_id, user), &(row, inbound_at)) in &conversations {
        cv.id.push(Uuid::now_v7());
        cv.customer_id.push(row.customer_id);
        cv.credential_id.push(row.credential_id);
        cv.channel.push(channel);
        cv.account_id.push(account_id);
        cv.user.push(user);
        cv.inbound_at.push(inbound_at);
    }
    let found: Vec<(Uuid, Uuid, bool)> = {
        let pick = |f: fn(&ToStore) -> &str| order.iter().map(|&i| f(&rows[i])).collect::<Vec<&str>>();
        sqlx::query_as(
            "WITH cv AS (
                 INSERT INTO conversations AS c (id, customer_id, credential_id, channel, account_id,
                                                 external_user_id, last_inbound_at)
                 SELECT t.id, t.customer_id, t.credential_id, t.channel, t.account_id, t.external_user_id,
                        CASE WHEN t.inbound_at IS NOT NULL THEN LEAST(t.inbound_at, now()) END
                 FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                             $7::timestamptz[])
                      AS t (id, customer_id, credential_id, channel, account_id, external_user_id, inbound_at)
                 ON CONFLICT (channel, account_id, external_user_id) DO UPDATE SET updated_at = now(),
                     last_inbound_at = GREATEST(c.last_inbound_at, excluded.last_inbound_at)
                 RETURNING c.id, c.channel, c.account_id, c.external_user_id
             ), i AS (
                 SELECT * FROM unnest($8::uuid[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                                      $14::text[], $15::text[], $16::text[], $17::text[], $18::timestamptz[],
                                      $19::text[], $20::text[])
                      AS i (id, channel, account_id, external_user_id, mid, direction, author, kind, text, raw,
                            meta_timestamp, status, status_reason)
             ), m AS (
                 INSERT INTO messages (id, conversation_id, channel, account_id, external_message_id, direction,
                                       author, kind, text, raw, meta_timestamp, status, status_reason)
                 SELECT i.id, cv.id, i.channel, i.account_id, i.mid, i.direction, i.author, i.kind, i.text,
                        i.raw::jsonb, i.meta_timestamp, i.status, i.status_reason
                 FROM i JOIN cv ON (cv.channel, cv.account_id, cv.external_user_id) = (i.channel, i.account_id, i.external_user_id)
                 ON CONFLICT (account_id, external_message_id) DO NOTHING
                 RETURNING id
             )
             SELECT i.id, cv.id, m.id IS NOT NULL
             FROM i JOIN cv ON (cv.channel, cv.account_id, cv.external_user_id) = (i.channel, i.account_id, i.external_user_id)
                    LEFT JOIN m ON m.id = i.id",
        )
        .bind(&cv.id)
        .bind(&cv.customer_id)
        .bind(&cv.credential_id)
        .bind(&cv.channel)
        .bind(&cv.account_id)
        .bind(&cv.user)
        .bind(&cv.inbound_at)
        .bind(order.iter().map(|&i| ids[i]).collect::<Vec<Uuid>>())
        .bind(pick(|r| &r.channel))
        .bind(pick(|r| &r.account_id))
        .bind(pick(|r| &r.external_user_id))
        .bind(pick(|r| &r.mid))
        .bind(pick(|r| r.direction.as_str()))
        .bind(pick(|r| r.author.as_str()))
        .bind(pick(|r| r.kind.as_str()))
        .bind(order.iter().map(|&i| rows[i].text.as_deref()).collect::<Vec<Option<&str>>>())
        .bind(pick(|r| &r.raw))
        .bind(order.iter().map(|&i| rows[i].meta_timestamp).collect::<Vec<DateTime<Utc>>>())
        .bind(pick(|r| r.status.as_str()))
        .bind(order.iter().map(|&i| rows[i].status_reason.as_deref()).collect::<Vec<Option<&str>>>())
        .fetch_all(pool)
        .await?
    };
    let stored: std::collections::HashMap<Uuid, Stored> = found
        .into_iter()
        .map(|(id, conversation_id, inserted)| {
            (
                id,
                Stored {
                    conversation_id,
                    inserted,
                },
            )
        })
        .collect();
    ids.iter()
        .map(|id| {
            stored
                .get(id)
                .copied()
                .ok_or_else(|| sqlx::Error::Protocol("a stored message has no conversation".into()))
        })
        .collect()
}

/// The conversations of a [`store_many`] batch, column by column (the statement unnests them).
#[derive(Default)]
struct ConversationColumns<'a> {
    id: Vec<Uuid>,
    customer_id: Vec<Uuid>,
    credential_id: Vec<Uuid>,
    channel: Vec<&'a str>,
    account_id: Vec<&'a str>,
    user: Vec<&'a str>,
    inbound_at: Vec<Option<DateTime<Utc>>>,
}

/// The customer deleted a message: keep the row (history), mark it, and stop it from being answered.
pub async fn mark_deleted(pool: &PgPool, account_id: &str, mid: &str) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE messages SET deleted_at = COALESCE(deleted_at, now()), updated_at = now(),
                status = CASE WHEN status = 'pending' THEN 'ignored' ELSE status END,
                status_reason = CASE WHEN status = 'pending' THEN 'deleted' ELSE status_reason END
         WHERE account_id = $1 AND external_message_id = $2",
    )
    .bind(account_id)
    .bind(mid)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// The customer edited a message at `edited_at` (Meta's time): the new text is what the AI reads from
/// now on, unless we already hold a newer one (Meta does not promise to deliver edits in order).
/// Returns whether the text changed.
pub async fn edit(
    pool: &PgPool,
    account_id: &str,
    mid: &str,
    text: &str,
    edited_at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE messages SET text = $3, edited_at = $4, updated_at = now()
         WHERE account_id = $1 AND external_message_id = $2 AND COALESCE(edited_at, meta_timestamp) < $4",
    )
    .bind(account_id)
    .bind(mid)
    .bind(text)
    .bind(edited_at)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Stores a customer's reaction on the message it reacts to, one per customer (`None`: the reaction was
/// removed), at Meta's time `at`. A reaction older than the one we hold from that customer changes
/// nothing, so redelivered and reordered reactions end in the state of the newest. Returns whether the
/// message is ours to react to.
pub async fn react(
    pool: &PgPool,
    account_id: &str,
    mid: &str,
    user: &str,
    reaction: Option<(&str, Option<&str>)>,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let at = at.timestamp_millis();
    let entry = reaction.map(
        |(reaction, emoji)| serde_json::json!({"user": user, "reaction": reaction, "emoji": emoji, "at": at}),
    );
    let r = sqlx::query(
        "UPDATE messages
         SET reactions = CASE
                 WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(reactions) r
                              WHERE r->>'user' = $3 AND (r->>'at')::bigint > $5) THEN reactions
                 ELSE COALESCE((SELECT jsonb_agg(r) FROM jsonb_array_elements(reactions) r WHERE r->>'user' <> $3), '[]'::jsonb)
                      || CASE WHEN $4::jsonb IS NULL THEN '[]'::jsonb ELSE jsonb_build_array($4::jsonb) END
             END,
             updated_at = now()
         WHERE account_id = $1 AND external_message_id = $2",
    )
    .bind(account_id)
    .bind(mid)
    .bind(user)
    .bind(entry)
    .bind(at)
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
    /// What it is, for the reply policy.
    pub kind: MessageKind,
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
    /// Who said it.
    pub author: Author,
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
/// ([`super::conversations::take_many`]); this form is for looking without taking.
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

/// An AI answer to store under its pass's lease ([`create_replies`]).
#[derive(Debug, Clone)]
pub struct NewReply {
    /// The pass's lease, renewed by the same statement.
    pub lease: Lease,
    /// The inbound messages it answers.
    pub answers: Vec<Uuid>,
    /// The answer, split for sending.
    pub chunks: Vec<String>,
    /// Store the first chunk already `sending`: the account can send right now.
    pub claim_first: bool,
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
    answers: &[Uuid],
    chunks: &[String],
    claim_first: bool,
) -> sqlx::Result<Option<Vec<Unsent>>> {
    let reply = NewReply {
        lease: *lease,
        answers: answers.to_vec(),
        chunks: chunks.to_vec(),
        claim_first,
    };
    create_replies(pool, vec![reply]).await.and_then(only)
}

/// [`create_reply`] for the answers of many jobs in one statement (through [`super::batch::Batcher`]):
/// one commit instead of one per answer, durable if any of them claims its first chunk. Returns, in
/// order, each answer's chunks, or `None` where its lease was lost. Conversations are offered in id
/// order; should two batches still deadlock (the plan's join order decides the locking order),
/// PostgreSQL fails one and the batcher retries its rows one by one.
pub async fn create_replies(pool: &PgPool, replies: Vec<NewReply>) -> sqlx::Result<Vec<Option<Vec<Unsent>>>> {
    let reply_ids: Vec<Uuid> = replies.iter().map(|_| Uuid::now_v7()).collect();
    let chunk_ids: Vec<Vec<Uuid>> = replies
        .iter()
        .map(|reply| reply.chunks.iter().map(|_| Uuid::now_v7()).collect())
        .collect();
    let mut ordered: Vec<usize> = (0..replies.len()).collect();
    ordered.sort_by_key(|&i| replies[i].lease.conversation_id);
    let mut chunks = ChunkColumns::default();
    let mut answered: (Vec<Uuid>, Vec<Uuid>) = Default::default();
    for &i in &ordered {
        let reply = &replies[i];
        for (n, (text, id)) in reply.chunks.iter().zip(&chunk_ids[i]).enumerate() {
            chunks.reply_id.push(reply_ids[i]);
            chunks.id.push(*id);
            chunks.text.push(text);
            chunks.index.push(n as i32);
            chunks.claimed.push(reply.claim_first && n == 0);
        }
        for id in &reply.answers {
            answered.0.push(reply_ids[i]);
            answered.1.push(*id);
        }
    }
    let commit = if replies.iter().any(|r| r.claim_first) {
        "true"
    } else {
        RELAXED_COMMIT
    };
    let leased: Vec<Uuid> = sqlx::query_scalar(&format!(
        "WITH lease AS (
             UPDATE conversations cv SET {TAKE_LEASE}
             FROM unnest($1::uuid[], $2::uuid[], $3::float8[], $4::uuid[]) AS l (conversation_id, owner, ttl, reply_id)
             WHERE cv.id = l.conversation_id AND {LEASE_AVAILABLE} AND {commit}
             RETURNING cv.id, cv.channel, cv.account_id, l.reply_id
         ), chunks AS (
             INSERT INTO messages (id, conversation_id, channel, account_id, direction, author, kind, text,
                                   meta_timestamp, status, send_attempted_at, reply_id, chunk_index)
             SELECT chunk.id, lease.id, lease.channel, lease.account_id, 'outbound', 'ai', 'text', chunk.text,
                    now(), CASE WHEN chunk.claimed THEN 'sending' ELSE 'queued' END,
                    CASE WHEN chunk.claimed THEN now() END,
                    chunk.reply_id, chunk.index
             FROM unnest($5::uuid[], $6::uuid[], $7::text[], $8::int[], $9::bool[])
                  AS chunk (reply_id, id, text, index, claimed)
             JOIN lease ON lease.reply_id = chunk.reply_id
         ), answered AS (
             UPDATE messages m SET status = 'answered', reply_id = a.reply_id, updated_at = now()
             FROM unnest($10::uuid[], $11::uuid[]) AS a (reply_id, id) JOIN lease ON lease.reply_id = a.reply_id
             WHERE m.id = a.id AND m.status = 'pending'
         )
         SELECT reply_id FROM lease"
    ))
    .bind(ordered.iter().map(|&i| replies[i].lease.conversation_id).collect::<Vec<Uuid>>())
    .bind(ordered.iter().map(|&i| replies[i].lease.owner).collect::<Vec<Uuid>>())
    .bind(ordered.iter().map(|&i| replies[i].lease.ttl.as_secs_f64()).collect::<Vec<f64>>())
    .bind(ordered.iter().map(|&i| reply_ids[i]).collect::<Vec<Uuid>>())
    .bind(&chunks.reply_id)
    .bind(&chunks.id)
    .bind(&chunks.text)
    .bind(&chunks.index)
    .bind(&chunks.claimed)
    .bind(&answered.0)
    .bind(&answered.1)
    .fetch_all(pool)
    .await?;
    Ok(replies
        .iter()
        .zip(reply_ids)
        .zip(chunk_ids)
        .map(|((reply, reply_id), ids)| {
            leased.contains(&reply_id).then(|| {
                ids.into_iter()
                    .zip(&reply.chunks)
                    .enumerate()
                    .map(|(n, (id, text))| {
                        let claimed = reply.claim_first && n == 0;
                        Unsent {
                            id,
                            author: Author::Ai,
                            text: text.clone(),
                            status: if claimed {
                                MessageStatus::Sending
                            } else {
                                MessageStatus::Queued
                            },
                            send_attempted_at: None,
                            claimed,
                        }
                    })
                    .collect()
            })
        })
        .collect())
}

/// The chunks of a [`create_replies`] batch, column by column (the statement unnests them).
#[derive(Default)]
struct ChunkColumns<'a> {
    reply_id: Vec<Uuid>,
    id: Vec<Uuid>,
    text: Vec<&'a str>,
    index: Vec<i32>,
    claimed: Vec<bool>,
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

/// The last chunk of a reply, accepted by Meta as `mid`, and the lease of the pass that sent it.
#[derive(Debug, Clone)]
pub struct ReplySent {
    /// The holder's lease.
    pub lease: Lease,
    /// The chunk's row.
    pub id: Uuid,
    /// Meta's message id for it.
    pub mid: String,
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
    let sent = ReplySent {
        lease: *lease,
        id,
        mid: mid.to_owned(),
    };
    mark_sent_and_release_many(pool, vec![sent]).await.and_then(only)
}

/// [`mark_sent_and_release_if_idle`] for the replies of many jobs in one statement (through
/// [`super::batch::Batcher`]): one durable commit instead of one per reply. Returns, in order, whether
/// each lease was given back. Conversations are offered in id order; should two batches still
/// deadlock, PostgreSQL fails one and the batcher retries its rows one by one.
pub async fn mark_sent_and_release_many(pool: &PgPool, sent: Vec<ReplySent>) -> sqlx::Result<Vec<bool>> {
    let mut ordered: Vec<&ReplySent> = sent.iter().collect();
    ordered.sort_by_key(|s| s.lease.conversation_id);
    let released: Vec<Uuid> = sqlx::query_scalar(&format!(
        "WITH l AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[]) AS l (id, mid, conversation_id, owner)
         ), sent AS (
             UPDATE messages m SET external_message_id = l.mid, updated_at = now(),
                 status = CASE WHEN m.status = 'delivered' THEN 'delivered' ELSE 'sent' END
             FROM l WHERE m.id = l.id
         )
         UPDATE conversations cv SET lease_owner = NULL, lease_expires_at = NULL
         FROM l
         WHERE cv.id = l.conversation_id AND cv.lease_owner = l.owner
           AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = cv.id AND m.id <> l.id AND {WORK})
         RETURNING cv.id"
    ))
    .bind(ordered.iter().map(|s| s.id).collect::<Vec<Uuid>>())
    .bind(ordered.iter().map(|s| s.mid.as_str()).collect::<Vec<&str>>())
    .bind(ordered.iter().map(|s| s.lease.conversation_id).collect::<Vec<Uuid>>())
    .bind(ordered.iter().map(|s| s.lease.owner).collect::<Vec<Uuid>>())
    .fetch_all(pool)
    .await?;
    Ok(sent
        .iter()
        .map(|s| released.contains(&s.lease.conversation_id))
        .collect())
}

/// Sets the status of chunks (back to `queued`, or `parked`/`failed` with a reason).
pub async fn set_status(
    pool: &PgPool,
    ids: &[Uuid],
    status: MessageStatus,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE messages SET status = $2, status_reason = $3, updated_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .bind(status)
        .bind(reason)
        .execute(pool)
        .await
        .map(drop)
}

/// An echo to recognise ([`mark_echo_delivered`]).
#[derive(Debug, Clone)]
pub struct Echo {
    /// The conversation's channel.
    pub channel: String,
    /// The account.
    pub account_id: String,
    /// The customer the message went to.
    pub user: Option<String>,
    /// Meta's id of the echoed message.
    pub mid: String,
    /// Its text.
    pub text: Option<String>,
}

/// Recognises an echo as one of our outbound messages and marks it: by Meta's id, or, for an echo that
/// overtook the Send API's answer, as the oldest of our `sending` chunks with the same text in the
/// conversation with `user`. Our chunks (the assistant's, and a person's sent through the operator API)
/// become `delivered`; a person's message from the app is only recognised (a redelivered echo). One statement on purpose: checked in two, an echo read between them would miss
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
    let echo = Echo {
        channel: channel.to_owned(),
        account_id: account_id.to_owned(),
        user: user.map(str::to_owned),
        mid: mid.to_owned(),
        text: text.map(str::to_owned),
    };
    mark_echoes_delivered(pool, vec![echo]).await.and_then(only)
}

/// [`mark_echo_delivered`] for the echoes of many jobs in one statement (through
/// [`super::batch::Batcher`]). Returns, in order, whether each echo was ours. Two echoes of one batch
/// never claim the same chunk: the later one finds none and waits for its own, as it would have
/// alone had the other come first.
pub async fn mark_echoes_delivered(pool: &PgPool, echoes: Vec<Echo>) -> sqlx::Result<Vec<bool>> {
    let column = |f: fn(&Echo) -> Option<&str>| echoes.iter().map(f).collect::<Vec<Option<&str>>>();
    let ours: Vec<i64> = sqlx::query_scalar(
        "WITH e AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY
                 AS e (channel, mid, text, account_id, user_id, n)
         ), target AS (
             SELECT DISTINCT ON (t.id) t.id, e.n, e.mid
             FROM e CROSS JOIN LATERAL (
                 -- Two index scans (Meta's id; the conversation's unfinished messages) rather than one
                 -- OR, which PostgreSQL can only answer by scanning every message without a Meta id.
                 SELECT found.id FROM (
                     (SELECT m.id, 0 AS rank, m.created_at, m.chunk_index FROM messages m
                      WHERE m.account_id = e.account_id AND m.external_message_id = e.mid AND m.direction = 'outbound')
                     UNION ALL
                     (SELECT m.id, 1, m.created_at, m.chunk_index FROM messages m
                      WHERE m.conversation_id = (SELECT c.id FROM conversations c
                                                 WHERE c.channel = e.channel AND c.account_id = e.account_id
                                                   AND c.external_user_id = e.user_id)
                        AND m.status = 'sending' AND m.direction = 'outbound'
                        AND m.external_message_id IS NULL AND m.text = e.text
                      ORDER BY m.created_at, m.chunk_index
                      LIMIT 1)
                 ) found
                 ORDER BY found.rank, found.created_at, found.chunk_index
                 LIMIT 1
             ) t
             ORDER BY t.id, e.n
         )
         UPDATE messages m
         SET status = CASE WHEN m.status IN ('queued', 'sending', 'sent') THEN 'delivered' ELSE m.status END,
             external_message_id = target.mid, updated_at = now()
         FROM target WHERE m.id = target.id
         RETURNING target.n",
    )
    .bind(column(|e| Some(&e.channel)))
    .bind(column(|e| Some(&e.mid)))
    .bind(column(|e| e.text.as_deref()))
    .bind(column(|e| Some(&e.account_id)))
    .bind(column(|e| e.user.as_deref()))
    .fetch_all(pool)
    .await?;
    Ok((1..=echoes.len() as i64).map(|n| ours.contains(&n)).collect())
}

/// Whether one of our chunks is mid-send in the conversation (an unmatched echo may still be ours).
pub async fn has_sending(pool: &PgPool, conversation_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1 AND direction = 'outbound'
                        AND status = 'sending' AND external_message_id IS NULL)",
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

/// Whether a message with Meta's id is stored for the account (the reconciler's "do we have it?").
pub async fn exists(pool: &PgPool, account_id: &str, mid: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE account_id = $1 AND external_message_id = $2)",
    )
    .bind(account_id)
    .bind(mid)
    .fetch_one(pool)
    .await
}
