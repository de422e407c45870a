//! Our messages going out: an answer stored as chunks under the pass's lease, each chunk tracked from
//! `queued` through `sending` to `sent` (and `delivered` by its echo, [`super::echoes`]), parked while
//! the account's token is dead and requeued when it comes back.

use super::batch::only;
use super::lease::{Lease, LEASE_AVAILABLE, RELAXED_COMMIT, TAKE_LEASE};
use super::work::{Unsent, WORK};
use omnidm_shared::meta::window;
use omnidm_shared::states::{Author, MessageStatus};
use sqlx::PgPool;
use uuid::Uuid;

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
    .bind(window::STANDARD_HOURS as i32)
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
    .bind(window::STANDARD_HOURS as i32)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok((requeued, expired))
}
