//! Customer messages (and a person's, seen as echoes) coming in: stored idempotently, unique per
//! account and Meta message id, with their conversation created on first contact; and the deletions,
//! edits and reactions Meta reports on them.

use super::batch::only;
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
