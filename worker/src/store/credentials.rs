//! Connected accounts: routing an event to its tenant, reading the (encrypted) token, and the
//! account-wide states every worker shares (throttle pause, `reauth_required`).

use chrono::{DateTime, Utc};
use omnidm_shared::crypto::{CryptoError, Keyring};
use secrecy::SecretString;
use sqlx::PgPool;
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
    /// `active`, `expiring`, `reauth_required` or `disconnected`.
    pub status: String,
    /// Meta throttled this account until then.
    pub send_paused_until: Option<DateTime<Utc>>,
    access_token_enc: String,
    /// The tenant's instructions to its AI.
    pub system_prompt: String,
}

impl Credential {
    /// Whether replies may be produced and sent for this account.
    pub fn can_send(&self) -> bool {
        matches!(self.status.as_str(), "active" | "expiring")
    }

    /// Decrypts the access token, bound to this row.
    pub fn access_token(&self, keyring: &Keyring) -> Result<SecretString, CryptoError> {
        keyring.decrypt(&self.access_token_enc, token_associated_data(self.id).as_bytes())
    }
}

pub use omnidm_shared::crypto::token_associated_data;

const SELECT: &str = "SELECT c.id, c.customer_id, c.channel, c.account_id, c.status, c.send_paused_until,
        c.access_token_enc, cu.system_prompt
    FROM instagram_credentials c JOIN customers cu ON cu.id = c.customer_id";

/// Finds the account a webhook entry was delivered for: the Instagram account id, or for Messenger
/// (`object: page`) the Page id. Also notes that a webhook arrived (for silence detection).
pub async fn route(pool: &PgPool, entry_id: &str) -> sqlx::Result<Option<Credential>> {
    let sql = format!("{SELECT} WHERE (c.account_id = $1 OR c.page_id = $1) AND c.status <> 'disconnected'");
    let credential: Option<Credential> = sqlx::query_as(&sql).bind(entry_id).fetch_optional(pool).await?;
    if let Some(c) = &credential {
        sqlx::query(
            "UPDATE instagram_credentials SET last_webhook_at = now()
             WHERE id = $1 AND (last_webhook_at IS NULL OR last_webhook_at < now() - interval '10 seconds')",
        )
        .bind(c.id)
        .execute(pool)
        .await?;
    }
    Ok(credential)
}

/// Reloads a credential (its pause and status change while a reply is being produced).
pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Credential>> {
    sqlx::query_as(&format!("{SELECT} WHERE c.id = $1"))
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

/// Meta says the token is dead: replies wait until the account is reconnected.
pub async fn mark_reauth_required(pool: &PgPool, id: Uuid, reason: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE instagram_credentials SET status = 'reauth_required', status_reason = $2, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await
    .map(drop)
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
