//! The reply pass's lease on a conversation: one pass at a time produces a conversation's replies, and
//! a crashed holder's lease simply expires. Taking it reads, in the same statement, the conversation,
//! its account and its work ([`super::work`]); giving it back checks that no work is left.

use super::batch::only;
use super::credentials::{Credential, CREDENTIAL_COLUMNS, CREDENTIAL_FROM};
use super::work::{work_rows, Work, WorkRow, WORK};
use chrono::{DateTime, Utc};
use omnidm_shared::states::{Channel, ConversationState};
use omnidm_shared::transitions::STATE_NOW;
use sqlx::{FromRow, PgPool, Row};
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

/// A reply pass's claim on a conversation: one worker at a time produces its replies, and a crashed
/// holder's claim simply expires after `ttl`.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    /// The conversation.
    pub conversation_id: Uuid,
    /// The reply pass holding it (not the process: two jobs of one worker exclude each other too).
    pub owner: Uuid,
    /// How long the claim lasts unless renewed.
    pub ttl: Duration,
}

/// Gives the conversation `cv` to the lease `l` (a row with `owner` and `ttl` in seconds) for its
/// `ttl`; pair with [`LEASE_AVAILABLE`].
pub(crate) const TAKE_LEASE: &str =
    "lease_owner = l.owner, lease_expires_at = now() + make_interval(secs => l.ttl)";

/// The conversation `cv` is free for the lease `l`: unleased, already its own, or its holder's lease
/// expired.
pub(crate) const LEASE_AVAILABLE: &str =
    "(cv.lease_owner IS NULL OR cv.lease_owner = l.owner OR cv.lease_expires_at < now())";

/// Lets the statement's transaction commit without waiting for its WAL flush (`synchronous_commit =
/// off` for that transaction only; PostgreSQL documents per-transaction use for exactly this mix). For
/// the lease bookkeeping and for storing an answer, whose waits were a third of a reply's database time:
/// a PostgreSQL *crash* can lose at most the last few hundred milliseconds of them, which costs a lease
/// expiry or a second AI call, never a lost or doubled message, because the send is always preceded by a
/// durable commit that marks the chunk `sending` (`create_replies` claiming the first chunk, or
/// `mark_sending`) and flushes them with it. True; goes in the statement's `WHERE`.
pub(crate) const RELAXED_COMMIT: &str = "set_config('synchronous_commit', 'off', true) IS NOT NULL";

/// What the lease holder needs to know: the conversation and, read in the same statement, its account
/// (status, throttle pause and token change while replies are produced, so it is re-read every pass)
/// and its work.
#[derive(Debug, sqlx::FromRow)]
pub struct Leased {
    /// Who speaks in the conversation now ([`STATE_NOW`]: a pause whose time has passed is the bot's).
    pub state: ConversationState,
    /// Meta's time of the customer's newest message: Meta's messaging windows count from it.
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// Who we answer.
    pub external_user_id: String,
    /// Where: Instagram, or the Page's Messenger.
    #[sqlx(rename = "conversation_channel")]
    pub channel: Channel,
    /// The account it belongs to.
    #[sqlx(flatten)]
    pub credential: Credential,
    /// What is left to answer and send, and the history, as of the moment the lease was taken.
    #[sqlx(skip)]
    pub work: Work,
}

/// What became of an attempt to take a conversation's lease ([`take_many`]).
#[derive(Debug)]
pub enum Take {
    /// Taken (or renewed): the conversation, its account and its work are the pass's.
    Held(Box<Leased>),
    /// Another live pass holds it (or the conversation is gone).
    Busy,
    /// The conversation changed between the statement's snapshot and its lease update, so the work
    /// the statement read may be stale: take again (a new statement reads a new snapshot).
    Raced,
}

/// How often [`settle`] takes again after [`Take::Raced`] before calling the conversation busy (a race
/// needs a write to the conversation within one statement's few microseconds; a busy answer only
/// delays the job by its retry).
const RACES_BEFORE_BUSY: usize = 3;

/// Runs `take` until it is not [`Take::Raced`]. `None`: another pass holds the conversation.
pub async fn settle<F, T>(mut take: F) -> sqlx::Result<Option<Leased>>
where
    F: FnMut() -> T,
    T: Future<Output = sqlx::Result<Take>>,
{
    for _ in 0..RACES_BEFORE_BUSY {
        match take().await? {
            Take::Held(leased) => return Ok(Some(*leased)),
            Take::Raced => continue,
            Take::Busy => return Ok(None),
        }
    }
    Ok(None)
}

/// Takes (or renews) the lease and reads the conversation, its account and its work (with `history`
/// messages of context) in one round trip: [`take_many`] for one pass. `None`: another live reply
/// pass holds it.
pub async fn acquire_lease(pool: &PgPool, lease: &Lease, history: u32) -> sqlx::Result<Option<Leased>> {
    settle(|| async { take_many(pool, vec![*lease], history).await.and_then(only) }).await
}

/// Takes the leases of many passes (through [`super::batch::Batcher`]) and reads what each holder
/// needs, in one statement. Returns, in order, what became of each.
///
/// The work must be read in a snapshot that already holds everything the previous holder committed,
/// or a pass could answer again what its predecessor just answered. A statement reads one snapshot,
/// taken when it starts, while its `UPDATE` acts on the newest version of the row (waiting for a
/// concurrent writer if need be): so the lease is only taken where the row's newest version is the
/// one the snapshot has (`xmin`, the id of the transaction that wrote that version, unchanged).
/// Every holder ends by writing the row (giving the lease back) after all its other writes, so an
/// unchanged row means the snapshot holds them all (a holder that never gets there has let its lease
/// expire, and its later writes check the lease). Where the row changed, nothing is taken and the
/// answer is [`Take::Raced`] if the snapshot saw the lease free, [`Take::Busy`] if it did not.
/// Leases are offered in conversation id order, like the other batched writes; should two batches
/// still deadlock, PostgreSQL fails one and the batcher retries its rows one by one.
pub async fn take_many(pool: &PgPool, leases: Vec<Lease>, history: u32) -> sqlx::Result<Vec<Take>> {
    let mut ordered: Vec<usize> = (0..leases.len()).collect();
    ordered.sort_by_key(|&i| leases[i].conversation_id);
    let rows = sqlx::query(&format!(
        "WITH l AS (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::float8[]) WITH ORDINALITY AS l (conversation_id, owner, ttl, n)
         ), seen AS (
             SELECT l.n, cv.xmin AS version, ({LEASE_AVAILABLE}) IS TRUE AS free
             FROM l JOIN conversations cv ON cv.id = l.conversation_id
         ), leased AS (
             UPDATE conversations cv SET {TAKE_LEASE}
             FROM l JOIN seen ON seen.n = l.n, {CREDENTIAL_FROM}
             WHERE cv.id = l.conversation_id AND cv.xmin = seen.version AND {LEASE_AVAILABLE}
               AND c.id = cv.credential_id AND {RELAXED_COMMIT}
             RETURNING l.n AS leased_n, cv.id AS conversation_id, ({STATE_NOW}) AS state, cv.last_inbound_at,
                       cv.external_user_id, cv.channel AS conversation_channel, {CREDENTIAL_COLUMNS}
         )
         SELECT seen.n, seen.free, leased.*, work.rows AS work
         FROM seen LEFT JOIN leased ON leased.leased_n = seen.n
         LEFT JOIN LATERAL (
             SELECT coalesce(json_agg(w), '[]') AS rows FROM ({work}) w
         ) work ON leased.leased_n IS NOT NULL",
        work = work_rows("leased.conversation_id", "$4"),
    ))
    .bind(ordered.iter().map(|&i| leases[i].conversation_id).collect::<Vec<Uuid>>())
    .bind(ordered.iter().map(|&i| leases[i].owner).collect::<Vec<Uuid>>())
    .bind(ordered.iter().map(|&i| leases[i].ttl.as_secs_f64()).collect::<Vec<f64>>())
    .bind(i64::from(history))
    .fetch_all(pool)
    .await?;
    let mut takes: Vec<Take> = leases.iter().map(|_| Take::Busy).collect();
    for row in rows {
        let n: i64 = row.try_get("n")?;
        // `n` numbers the sorted leases from 1; map it back to the caller's order.
        let Some(&index) = usize::try_from(n - 1).ok().and_then(|n| ordered.get(n)) else {
            continue;
        };
        takes[index] = match row.try_get::<Option<sqlx::types::Json<Vec<WorkRow>>>, _>("work")? {
            Some(sqlx::types::Json(work)) => {
                let mut leased = Leased::from_row(&row)?;
                leased.work = Work::from_rows(work);
                Take::Held(Box::new(leased))
            }
            None if row.try_get::<bool, _>("free")? => Take::Raced,
            None => Take::Busy,
        };
    }
    Ok(takes)
}

impl Lease {
    /// A new claim for one reply pass on the conversation (the owner is the pass, not the process).
    pub fn for_pass(conversation_id: Uuid, ttl: Duration) -> Self {
        Self {
            conversation_id,
            owner: Uuid::new_v4(),
            ttl,
        }
    }

    /// Gives the lease back, but only if the conversation has no work left (no unanswered message, no
    /// unsent chunk): the usual end of a pass, in one round trip. `false`: something arrived meanwhile
    /// and the holder must go round again (a job that found the lease taken relies on it, or on its own
    /// retry).
    pub async fn release_if_idle(&self, pool: &PgPool) -> sqlx::Result<bool> {
        self.release_when(
            pool,
            &format!("NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = cv.id AND {WORK})"),
        )
        .await
    }

    /// Gives the lease back so the next message is answered without waiting for expiry. Harmless when
    /// the lease is no longer ours: only its holder's claim is cleared.
    pub async fn release(&self, pool: &PgPool) -> sqlx::Result<()> {
        self.release_when(pool, "true").await.map(drop)
    }

    /// Clears the lease of the conversation `cv` if this lease still holds it and `condition` is true.
    async fn release_when(&self, pool: &PgPool, condition: &str) -> sqlx::Result<bool> {
        let released = sqlx::query(&format!(
            "UPDATE conversations cv SET lease_owner = NULL, lease_expires_at = NULL
             WHERE cv.id = $1 AND cv.lease_owner = $2 AND {RELAXED_COMMIT} AND {condition}"
        ))
        .bind(self.conversation_id)
        .bind(self.owner)
        .execute(pool)
        .await?;
        Ok(released.rows_affected() == 1)
    }
}
