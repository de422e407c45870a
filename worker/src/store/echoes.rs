//! Echoes of what the account sent: ours (recognised by Meta's id, or by text while the send is still
//! in flight) are marked delivered; anything else is a person's message from the app.

use super::batch::only;
use sqlx::PgPool;
use uuid::Uuid;

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
