//! Tenants and their settings (the assistant's prompt, reply policy, escalation and channels).

use chrono::{DateTime, Utc};
use omnidm_shared::policy::ReplyPolicy;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

/// A tenant as the dashboard shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Customer {
    /// Id.
    pub id: Uuid,
    /// Business name.
    pub name: String,
}

/// Creates a customer; returns its id.
pub async fn create(pool: &PgPool, name: &str, system_prompt: &str) -> sqlx::Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO customers (id, name, system_prompt) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(name)
        .bind(system_prompt)
        .execute(pool)
        .await?;
    Ok(id)
}

/// One customer.
pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Customer>> {
    sqlx::query_as("SELECT id, name FROM customers WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Every customer, newest first (the dashboard's picker).
pub async fn list(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<Customer>> {
    sqlx::query_as("SELECT id, name FROM customers ORDER BY created_at DESC LIMIT $1")
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// A customer's settings: what `GET /api/customers/{id}` shows (never the notification secret).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Settings {
    /// Id.
    pub id: Uuid,
    /// Business name.
    pub name: String,
    /// The assistant's instructions.
    pub system_prompt: String,
    /// Overrides of the default reply policy.
    pub reply_policy: Json<ReplyPolicy>,
    /// What the customer reads on a handoff (`None`: the default).
    pub handoff_message: Option<String>,
    /// Where escalations are notified.
    pub notify_url: Option<String>,
    /// Whether a notification secret exists.
    pub has_notify_secret: bool,
    /// Whether the Page's Messenger DMs are answered.
    pub messenger_enabled: bool,
    /// Whether another app asking for a thread gets it.
    pub pass_thread_on_request: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

const SETTINGS: &str = "id, name, system_prompt, reply_policy, handoff_message, notify_url,
    notify_secret_enc IS NOT NULL AS has_notify_secret, messenger_enabled, pass_thread_on_request,
    created_at, updated_at";

/// One customer's settings.
pub async fn settings(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Settings>> {
    sqlx::query_as(&format!("SELECT {SETTINGS} FROM customers WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A change of settings, already validated; `None` leaves a setting as it is.
#[derive(Debug, Default)]
pub struct Update {
    /// New name.
    pub name: Option<String>,
    /// New instructions.
    pub system_prompt: Option<String>,
    /// The whole new policy (the API merged the change over the stored one).
    pub reply_policy: Option<ReplyPolicy>,
    /// `Some(None)` returns to the default message.
    pub handoff_message: Option<Option<String>>,
    /// `Some(None)` removes the URL.
    pub notify_url: Option<Option<String>>,
    /// A new secret, encrypted.
    pub notify_secret_enc: Option<String>,
    /// Messenger on or off.
    pub messenger_enabled: Option<bool>,
    /// Pass threads on request, or not.
    pub pass_thread_on_request: Option<bool>,
}

/// Applies `update` in one statement; `None` if there is no such customer.
pub async fn update(pool: &PgPool, id: Uuid, update: Update) -> sqlx::Result<Option<Settings>> {
    sqlx::query_as(&format!(
        "UPDATE customers SET
             name = COALESCE($2, name),
             system_prompt = COALESCE($3, system_prompt),
             reply_policy = COALESCE($4, reply_policy),
             handoff_message = CASE WHEN $5 THEN $6 ELSE handoff_message END,
             notify_url = CASE WHEN $7 THEN $8 ELSE notify_url END,
             notify_secret_enc = COALESCE($9, notify_secret_enc),
             messenger_enabled = COALESCE($10, messenger_enabled),
             pass_thread_on_request = COALESCE($11, pass_thread_on_request),
             updated_at = now()
         WHERE id = $1
         RETURNING {SETTINGS}"
    ))
    .bind(id)
    .bind(update.name)
    .bind(update.system_prompt)
    .bind(update.reply_policy.map(Json))
    .bind(update.handoff_message.is_some())
    .bind(update.handoff_message.flatten())
    .bind(update.notify_url.is_some())
    .bind(update.notify_url.flatten())
    .bind(update.notify_secret_enc)
    .bind(update.messenger_enabled)
    .bind(update.pass_thread_on_request)
    .fetch_optional(pool)
    .await
}
