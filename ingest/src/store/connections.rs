//! Connected Instagram accounts (`instagram_credentials`) as the connect flow and the admin API see them:
//! storing a login's result (encrypted, bound to the row), listing status, disconnecting.

use chrono::{DateTime, Utc};
use omnidm_shared::account_events;
use omnidm_shared::config::MetaLogin;
use omnidm_shared::crypto::{token_associated_data, CryptoError, Keyring};
use omnidm_shared::meta::login::ConnectedAccount;
use omnidm_shared::states::CredentialStatus;
use secrecy::SecretString;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Why a connection could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The Instagram account is connected to another customer (one account, one customer).
    #[error("Instagram account {account_id} belongs to another customer")]
    AccountTaken {
        /// The account in question.
        account_id: String,
    },
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What storing one account did.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The credential row.
    pub id: Uuid,
    /// The account's status before, if it existed (a reconnect).
    pub previous_status: Option<CredentialStatus>,
}

/// Stores every account of one login in one transaction: all or nothing, so a failure leaves no
/// half-written credential. New accounts are inserted; an account this customer already had (any
/// status) gets the new token and becomes `active` again.
pub async fn store_login(
    pool: &PgPool,
    keyring: &Keyring,
    customer_id: Uuid,
    accounts: &[ConnectedAccount],
) -> Result<Vec<Stored>, StoreError> {
    let mut tx = pool.begin().await?;
    let mut stored = Vec::with_capacity(accounts.len());
    for account in accounts {
        let existing: Option<(Uuid, Uuid, CredentialStatus)> = sqlx::query_as(
            "SELECT id, customer_id, status FROM instagram_credentials WHERE account_id = $1 FOR UPDATE",
        )
        .bind(&account.account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let login = account.login.as_stored();
        let (id, previous_status) = match existing {
            Some((_, owner, _)) if owner != customer_id => {
                return Err(StoreError::AccountTaken {
                    account_id: account.account_id.clone(),
                })
            }
            Some((id, _, status)) => {
                let encrypted = encrypt(keyring, id, &account.token);
                sqlx::query(
                    "UPDATE instagram_credentials
                     SET access_token_enc = $2, token_key_id = $3, token_expires_at = $4, login = $5,
                         page_id = $6, username = COALESCE($7, username), status = 'active',
                         status_reason = NULL, send_paused_until = NULL, token_refreshed_at = now(),
                         token_checked_at = now(), subscribed_at = now(), disconnected_at = NULL,
                         connected_at = CASE WHEN status = 'disconnected' THEN now() ELSE connected_at END,
                         updated_at = now()
                     WHERE id = $1",
                )
                .bind(id)
                .bind(&encrypted)
                .bind(keyring.current_key_id())
                .bind(account.token_expires_at)
                .bind(login)
                .bind(&account.page_id)
                .bind(&account.username)
                .execute(&mut *tx)
                .await?;
                (id, Some(status))
            }
            None => {
                let id = Uuid::now_v7();
                let encrypted = encrypt(keyring, id, &account.token);
                sqlx::query(
                    "INSERT INTO instagram_credentials
                       (id, customer_id, channel, account_id, page_id, username, access_token_enc,
                        token_key_id, token_expires_at, login, token_refreshed_at, token_checked_at,
                        subscribed_at)
                     VALUES ($1, $2, 'instagram', $3, $4, $5, $6, $7, $8, $9, now(), now(), now())",
                )
                .bind(id)
                .bind(customer_id)
                .bind(&account.account_id)
                .bind(&account.page_id)
                .bind(&account.username)
                .bind(&encrypted)
                .bind(keyring.current_key_id())
                .bind(account.token_expires_at)
                .bind(login)
                .execute(&mut *tx)
                .await?;
                (id, None)
            }
        };
        let kind = if previous_status.is_some() {
            "reconnected"
        } else {
            "connected"
        };
        account_events::record(
            &mut *tx,
            id,
            kind,
            serde_json::json!({ "previous_status": previous_status, "login": login }),
        )
        .await?;
        stored.push(Stored { id, previous_status });
    }
    tx.commit().await?;
    Ok(stored)
}

fn encrypt(keyring: &Keyring, id: Uuid, token: &SecretString) -> String {
    keyring.encrypt(token, token_associated_data(id).as_bytes())
}

/// One account's connection status, as the admin API and the dashboard show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Credential id.
    #[serde(skip)]
    pub id: Uuid,
    /// The Instagram professional account id (webhook `entry.id`).
    pub account_id: String,
    /// `@handle` without the `@`.
    pub username: Option<String>,
    /// The linked Facebook Page (Facebook Login).
    pub page_id: Option<String>,
    /// `facebook` or `instagram`.
    pub login: String,
    /// `active`, `expiring`, `reauth_required` or `disconnected`.
    pub status: CredentialStatus,
    /// Why the status is what it is (Meta's error for `reauth_required`).
    pub status_reason: Option<String>,
    /// When it was (last) connected.
    pub connected_at: DateTime<Utc>,
    /// When the token expires (`null`: it does not).
    pub token_expires_at: Option<DateTime<Utc>>,
    /// The last webhook received for it: an old value means Meta stopped delivering.
    pub last_webhook_at: Option<DateTime<Utc>>,
    /// The last message stored in any of its conversations.
    pub last_message_at: Option<DateTime<Utc>>,
    /// When it was disconnected.
    pub disconnected_at: Option<DateTime<Utc>>,
}

impl Connection {
    /// Whether DMs are being answered for it.
    pub fn is_connected(&self) -> bool {
        self.status.can_send()
    }
}

/// A recent entry of an account's audit trail.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AccountEvent {
    /// Credential it belongs to.
    #[serde(skip)]
    pub credential_id: Uuid,
    /// `connected`, `reauth_required`, `token_refreshed`, `resubscribed`, …
    pub kind: String,
    /// Kind-specific facts.
    pub detail: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Every account of a customer, oldest connection first.
pub async fn for_customer(pool: &PgPool, customer_id: Uuid) -> sqlx::Result<Vec<Connection>> {
    sqlx::query_as(
        "SELECT c.id, c.account_id, c.username, c.page_id, c.login, c.status, c.status_reason,
                c.connected_at, c.token_expires_at, c.last_webhook_at, c.disconnected_at,
                (SELECT max(m.created_at) FROM messages m JOIN conversations v ON v.id = m.conversation_id
                 WHERE v.credential_id = c.id) AS last_message_at
         FROM instagram_credentials c WHERE c.customer_id = $1 ORDER BY c.connected_at, c.id",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await
}

/// The most recent audit entries of a customer's accounts (at most `per_account` each).
pub async fn recent_events(
    pool: &PgPool,
    customer_id: Uuid,
    per_account: i64,
) -> sqlx::Result<Vec<AccountEvent>> {
    sqlx::query_as(
        "SELECT credential_id, kind, detail, created_at FROM (
            SELECT e.*, row_number() OVER (PARTITION BY e.credential_id ORDER BY e.created_at DESC) AS n
            FROM account_events e JOIN instagram_credentials c ON c.id = e.credential_id
            WHERE c.customer_id = $1
         ) ranked WHERE n <= $2 ORDER BY created_at DESC",
    )
    .bind(customer_id)
    .bind(per_account)
    .fetch_all(pool)
    .await
}

/// What disconnecting needs of an account: where to unsubscribe and with which (encrypted) token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Connected {
    /// Credential id (associated data of the token).
    pub id: Uuid,
    /// Instagram account id.
    pub account_id: String,
    /// Page to unsubscribe (Facebook Login).
    pub page_id: Option<String>,
    /// Which host.
    pub login: String,
    access_token_enc: Option<String>,
}

impl Connected {
    /// The login flavour.
    pub fn login(&self) -> MetaLogin {
        MetaLogin::from_stored(&self.login)
    }

    /// Decrypts the token, bound to this row.
    pub fn token(&self, keyring: &Keyring) -> Result<SecretString, CryptoError> {
        let stored = self.access_token_enc.as_deref().ok_or(CryptoError::Malformed)?;
        keyring.decrypt(stored, token_associated_data(self.id).as_bytes())
    }
}

/// A customer's accounts that still have a token (optionally only `account_id`).
pub async fn with_token(
    pool: &PgPool,
    customer_id: Uuid,
    account_id: Option<&str>,
) -> sqlx::Result<Vec<Connected>> {
    sqlx::query_as(
        "SELECT id, account_id, page_id, login, access_token_enc FROM instagram_credentials
         WHERE customer_id = $1 AND status <> 'disconnected' AND ($2::text IS NULL OR account_id = $2)",
    )
    .bind(customer_id)
    .bind(account_id)
    .fetch_all(pool)
    .await
}

/// Disconnects: deletes the token, keeps the row and so every conversation and message.
pub async fn mark_disconnected(
    pool: &PgPool,
    id: Uuid,
    unsubscribed: bool,
    error: Option<&str>,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE instagram_credentials
         SET status = 'disconnected', status_reason = 'disconnected_by_operator', access_token_enc = NULL,
             token_key_id = NULL, token_expires_at = NULL, disconnected_at = now(), updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    account_events::record(
        &mut *tx,
        id,
        "disconnected",
        serde_json::json!({ "unsubscribed": unsubscribed, "unsubscribe_error": error }),
    )
    .await?;
    tx.commit().await
}
