//! Connected accounts: routing an event to its tenant, reading the (encrypted) token, and the
//! account-wide states every worker shares (throttle pause, `reauth_required`).

use chrono::{DateTime, Utc};
use omnidm_shared::config::MetaLogin;
use omnidm_shared::crypto::{CryptoError, Keyring};
use omnidm_shared::meta::graph::Host;
use omnidm_shared::policy::ReplyPolicy;
use omnidm_shared::states::CredentialStatus;
use secrecy::SecretString;
use sqlx::types::Json;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A connected account, as the worker needs it. The token stays encrypted until the moment of a send.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Credential {
    /// Row id; also the associated data of the token's ciphertext.
    pub id: Uuid,
    /// The tenant.
    pub customer_id: Uuid,
    /// `instagram` or `messenger`.
    pub channel: String,
    /// The Instagram account id (webhook `entry.id`).
    pub account_id: String,
    /// The linked Facebook Page (Facebook Login only).
    pub page_id: Option<String>,
    /// The Instagram handle, for logs and events.
    pub username: Option<String>,
    /// `facebook` or `instagram`: which login issued the token, hence which Graph host accepts it.
    pub login: String,
    /// When the token stops working (`None`: does not expire).
    pub token_expires_at: Option<DateTime<Utc>>,
    /// When the token was issued or last refreshed.
    pub token_refreshed_at: Option<DateTime<Utc>>,
    /// Whether its token works.
    pub status: CredentialStatus,
    /// Meta throttled this account until then.
    pub send_paused_until: Option<DateTime<Utc>>,
    /// `None` once the account was disconnected (the token is deleted, the history kept).
    access_token_enc: Option<String>,
    /// The tenant's instructions to its AI.
    pub system_prompt: String,
    /// The tenant's overrides of the default reply policy.
    pub reply_policy: Json<ReplyPolicy>,
    /// What the customer is told when the conversation is handed to a person (`None`: the default).
    pub handoff_message: Option<String>,
    /// Whether the tenant wants its Page's Messenger DMs answered.
    pub messenger_enabled: bool,
    /// Whether another app's `request_thread_control` is honoured by passing it the thread.
    pub pass_thread_on_request: bool,
}

pub use omnidm_shared::policy::DEFAULT_HANDOFF_MESSAGE;

impl Credential {
    /// Whether replies may be produced and sent for this account.
    pub fn can_send(&self) -> bool {
        self.status.can_send()
    }

    /// The handoff message to send.
    pub fn handoff_message(&self) -> &str {
        self.handoff_message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or(DEFAULT_HANDOFF_MESSAGE)
    }

    /// The Page whose thread control we pass and take: only Page-linked (Facebook Login) accounts take
    /// part in Meta's Handover Protocol.
    pub fn handover_page(&self) -> Option<&str> {
        match self.login() {
            MetaLogin::Facebook => self.page_id.as_deref(),
            MetaLogin::Instagram => None,
        }
    }

    /// Until when sending is paused, if Meta throttled the account and the advised wait is not over
    /// (every worker holds back).
    pub fn send_paused(&self) -> Option<DateTime<Utc>> {
        self.send_paused_until.filter(|until| *until > Utc::now())
    }

    /// Which login flavour issued the token.
    pub fn login(&self) -> MetaLogin {
        MetaLogin::from_stored(&self.login)
    }

    /// The Graph host that accepts this credential's token.
    pub fn host(&self) -> Host {
        self.login().into()
    }

    /// Decrypts the access token, bound to this row.
    pub fn access_token(&self, keyring: &Keyring) -> Result<SecretString, CryptoError> {
        let stored = self.access_token_enc.as_deref().ok_or(CryptoError::Malformed)?;
        keyring.decrypt(stored, token_associated_data(self.id).as_bytes())
    }
}

pub use omnidm_shared::crypto::token_associated_data;

/// The columns of [`Credential`], for every query that reads one (here and joined into the reply
/// pass's lease statement, so taking the lease reads the account in the same round trip).
pub(crate) const CREDENTIAL_COLUMNS: &str = "c.id, c.customer_id, c.channel, c.account_id, c.page_id,
        c.username, c.login, c.token_expires_at, c.token_refreshed_at, c.status, c.send_paused_until,
        c.access_token_enc, cu.system_prompt, cu.reply_policy, cu.handoff_message, cu.messenger_enabled,
        cu.pass_thread_on_request";

/// The tables [`CREDENTIAL_COLUMNS`] come from (`c` the credential, `cu` its customer).
pub(crate) const CREDENTIAL_FROM: &str = "instagram_credentials c JOIN customers cu ON cu.id = c.customer_id";

/// Finds the account a webhook entry was delivered for: the Instagram account id, or for Messenger
/// (`object: page`) the Page id. With `webhook`, also notes that a webhook arrived (silence detection;
/// events the reconciler recovered are not webhooks).
pub async fn route(pool: &PgPool, entry_id: &str, webhook: bool) -> sqlx::Result<Option<Credential>> {
    // One round trip for both: every webhook takes this path, and the note is written at most every
    // ten seconds per account (an UPDATE matching no row writes nothing).
    sqlx::query_as(&format!(
        "WITH found AS (
             SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM}
             WHERE (c.account_id = $1 OR c.page_id = $1) AND c.status <> 'disconnected'
         ), noted AS (
             UPDATE instagram_credentials SET last_webhook_at = now()
             WHERE $2 AND id IN (SELECT id FROM found)
               AND (last_webhook_at IS NULL OR last_webhook_at < now() - interval '10 seconds')
         )
         SELECT * FROM found"
    ))
    .bind(entry_id)
    .bind(webhook)
    .fetch_optional(pool)
    .await
}

/// How long a routing answer is reused. Every event is routed, and on a busy account the same answer
/// comes back thousands of times a second; reusing it for a second takes two statements off every DM.
/// Only the account's identity is used from it (the reply pass re-reads status, pause and token with its
/// lease), so a stale answer can at worst store a DM under an account disconnected a moment ago, where
/// it waits, unanswered, as it would have had it come a second later. Unknown accounts are never
/// cached: an account connected a moment ago is routed at once.
const ROUTE_FRESH_FOR: Duration = Duration::from_secs(1);

/// Caps the cache; past it, expired answers are dropped (a worker serving more accounts than this in
/// one second gains less from caching anyway).
const ROUTES_CACHED: usize = 10_000;

/// [`route`] with its answers for known accounts reused for [`ROUTE_FRESH_FOR`]. Shared by a worker's
/// jobs. The webhook note is written when the answer is read from the database, at least once a second
/// while webhooks come, so silence detection is unchanged.
#[derive(Debug, Default)]
pub struct Routes {
    known: Mutex<HashMap<String, (Instant, Credential)>>,
}

impl Routes {
    /// Routes `entry_id` as [`route`] does, from the cache when the answer is fresh.
    pub async fn route(
        &self,
        pool: &PgPool,
        entry_id: &str,
        webhook: bool,
    ) -> sqlx::Result<Option<Credential>> {
        if let Some((at, credential)) = self.known().get(entry_id) {
            if at.elapsed() < ROUTE_FRESH_FOR {
                return Ok(Some(credential.clone()));
            }
        }
        let found = route(pool, entry_id, webhook).await?;
        let mut known = self.known();
        match &found {
            Some(credential) => {
                if known.len() >= ROUTES_CACHED {
                    known.retain(|_, (at, _)| at.elapsed() < ROUTE_FRESH_FOR);
                }
                if known.len() < ROUTES_CACHED {
                    known.insert(entry_id.to_owned(), (Instant::now(), credential.clone()));
                }
            }
            None => {
                known.remove(entry_id);
            }
        }
        Ok(found)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Credential)>> {
        // A panic while holding the lock cannot leave the map inconsistent: every change is one call.
        self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reloads a credential (its pause and status change while a reply is being produced).
pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Credential>> {
    sqlx::query_as(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE c.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Pauses every send on the account until `until` (never shortens an existing pause).
pub async fn pause_sending(pool: &PgPool, id: Uuid, until: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE instagram_credentials
         SET send_paused_until = GREATEST(COALESCE(send_paused_until, $2), $2), updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(until)
    .execute(pool)
    .await
    .map(drop)
}

/// Meta says the token is dead: replies wait until the account is reconnected. Recorded as an account
/// event the first time only (every parked send reports it), in the same transaction, so the audit trail
/// never lags the status an operator sees.
pub async fn mark_reauth_required(pool: &PgPool, id: Uuid, reason: &str) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE instagram_credentials SET status = 'reauth_required', status_reason = $2, updated_at = now()
         WHERE id = $1 AND status IN ('active', 'expiring')",
    )
    .bind(id)
    .bind(reason)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed > 0 {
        record_event(
            &mut *tx,
            id,
            "reauth_required",
            serde_json::json!({ "reason": reason }),
        )
        .await?;
    }
    tx.commit().await
}

/// Appends to the account's audit trail (shown by the admin status API).
pub use omnidm_shared::account_events::record as record_event;

/// Every credential that still has a token (the lifecycle job's worklist).
pub async fn all_connected(pool: &PgPool) -> sqlx::Result<Vec<Credential>> {
    sqlx::query_as(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE c.status <> 'disconnected' ORDER BY c.id"
    ))
    .fetch_all(pool)
    .await
}

/// Stores a refreshed token (encrypted, bound to the row) and its expiry; the account is `active` again.
/// Only if the row still holds the token that was refreshed, so a reconnect in between wins.
pub async fn store_refreshed(
    pool: &PgPool,
    keyring: &Keyring,
    credential: &Credential,
    token: &SecretString,
    expires_at: Option<DateTime<Utc>>,
) -> Result<bool, StoreError> {
    let encrypted = keyring.encrypt(token, token_associated_data(credential.id).as_bytes());
    let changed = sqlx::query(
        "UPDATE instagram_credentials
         SET access_token_enc = $2, token_key_id = $3, token_expires_at = $4, token_refreshed_at = now(),
             token_checked_at = now(), status = 'active', status_reason = NULL, updated_at = now()
         WHERE id = $1 AND access_token_enc IS NOT DISTINCT FROM $5",
    )
    .bind(credential.id)
    .bind(&encrypted)
    .bind(keyring.current_key_id())
    .bind(expires_at)
    .bind(&credential.access_token_enc)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// Sets the lifecycle status (`active`/`expiring`/`reauth_required`) after a check, notes the check,
/// and records a change of status as an account event in the same transaction (so the audit trail
/// never lags the status). A disconnected row is never touched.
pub async fn set_checked_status(
    pool: &PgPool,
    id: Uuid,
    status: CredentialStatus,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE instagram_credentials
         SET token_checked_at = now(), updated_at = now(),
             status = $2, status_reason = CASE WHEN status = $2 THEN status_reason ELSE $3 END
         WHERE id = $1 AND status <> 'disconnected' AND status IS DISTINCT FROM $2",
    )
    .bind(id)
    .bind(status)
    .bind(reason)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed > 0 {
        record_event(&mut *tx, id, status.as_str(), serde_json::json!({})).await?;
    } else {
        sqlx::query("UPDATE instagram_credentials SET token_checked_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Connections by status, for the `worker_credentials` gauge.
pub async fn count_by_status(pool: &PgPool) -> sqlx::Result<Vec<(CredentialStatus, i64)>> {
    sqlx::query_as("SELECT status, count(*) FROM instagram_credentials GROUP BY status")
        .fetch_all(pool)
        .await
}

/// Active accounts that still have parked replies (a resume that was missed, e.g. its job was lost).
pub async fn with_parked_work(pool: &PgPool) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT DISTINCT c.credential_id FROM messages m JOIN conversations c ON c.id = m.conversation_id
         JOIN instagram_credentials k ON k.id = c.credential_id
         WHERE m.status = 'parked' AND k.status IN ('active', 'expiring')",
    )
    .fetch_all(pool)
    .await
}

/// Re-encrypts every stored token with the current key (after `ENCRYPTION_KEY` changed and the old key
/// moved to `ENCRYPTION_KEYS_PREVIOUS`). Returns (re-encrypted, already current). Each row is updated
/// only if it still holds the value that was read, so a concurrent reconnect or refresh is not undone.
pub async fn rotate_keys(pool: &PgPool, keyring: &Keyring) -> Result<(u64, u64), StoreError> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, access_token_enc FROM instagram_credentials WHERE access_token_enc IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    let (mut rotated, mut current) = (0, 0);
    for (id, stored) in rows {
        if Keyring::key_id_of(&stored) == Some(keyring.current_key_id()) {
            current += 1;
            continue;
        }
        let aad = token_associated_data(id);
        let token = keyring.decrypt(&stored, aad.as_bytes())?;
        let encrypted = keyring.encrypt(&token, aad.as_bytes());
        rotated += sqlx::query(
            "UPDATE instagram_credentials SET access_token_enc = $2, token_key_id = $3, updated_at = now()
             WHERE id = $1 AND access_token_enc = $4",
        )
        .bind(id)
        .bind(&encrypted)
        .bind(keyring.current_key_id())
        .bind(&stored)
        .execute(pool)
        .await?
        .rows_affected();
    }
    Ok((rotated, current))
}

/// A store operation that also decrypts or encrypts.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored token could not be decrypted (key missing from the keyring, or tampered row).
    #[error("token: {0}")]
    Crypto(#[from] CryptoError),
}

/// Records an event we could not attribute to an account (unknown account, dashboard test).
pub async fn record_unrouted(
    pool: &PgPool,
    object: &str,
    entry_id: &str,
    kind: &str,
    raw: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO unrouted_events (id, object, entry_id, kind, raw) VALUES ($1, $2, $3, $4, $5::jsonb)",
    )
    .bind(Uuid::now_v7())
    .bind(object)
    .bind(entry_id)
    .bind(kind)
    .bind(raw)
    .execute(pool)
    .await
    .map(drop)
}
