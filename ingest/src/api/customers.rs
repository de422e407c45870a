//! `POST /api/customers` creates a tenant; `GET /api/customers/{id}` and `PATCH /api/customers/{id}`
//! read and change its settings: the assistant's prompt, the reply policy, the handoff message, where
//! escalations are notified, Messenger, and whether other apps get a thread they ask for.

use super::error::parse_id;
use super::ApiError;
use crate::app::AppState;
use crate::store::customers::{self, Settings, Update};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use omnidm_shared::config::is_callable_url;
use omnidm_shared::crypto::notify_secret_associated_data;
use omnidm_shared::policy::{ReplyPolicy, DEFAULT_HANDOFF_MESSAGE, MAX_FIXED_REPLY_CHARS};
use rand::RngCore;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

/// Longest accepted name and system prompt: generous, but bounded (the prompt goes to the AI each time).
const MAX_NAME: usize = 200;
const MAX_PROMPT: usize = 20_000;

/// Body of `POST /api/customers`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewCustomer {
    name: String,
    #[serde(default)]
    system_prompt: Option<String>,
}

/// 201 `{"id"}`.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<NewCustomer>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let name = valid_name(&body.name)?;
    let prompt = valid_prompt(body.system_prompt.unwrap_or_default())?;
    let id = customers::create(state.db.pool()?, &name, &prompt).await?;
    tracing::info!(customer_id = %id, "customer created");
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}

fn valid_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("name must be 1 to {MAX_NAME} characters"),
        ));
    }
    Ok(name.to_owned())
}

fn valid_prompt(prompt: String) -> Result<String, ApiError> {
    if prompt.chars().count() > MAX_PROMPT {
        return Err(ApiError::bad_request(
            "invalid_system_prompt",
            format!("systemPrompt must be at most {MAX_PROMPT} characters"),
        ));
    }
    Ok(prompt)
}

/// Longest accepted notification URL.
const MAX_URL: usize = 2_048;

/// Body of `PATCH /api/customers/{id}`: every field optional; `null` returns `handoffMessage` to the
/// default and removes `notifyUrl`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomerChange {
    name: Option<String>,
    system_prompt: Option<String>,
    reply_policy: Option<ReplyPolicy>,
    #[serde(default, deserialize_with = "present")]
    handoff_message: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    notify_url: Option<Option<String>>,
    messenger_enabled: Option<bool>,
    pass_thread_on_request: Option<bool>,
    /// Issue a new notification secret (returned once, in this answer).
    #[serde(default)]
    rotate_notify_secret: bool,
}

/// Tells a member that is `null` (`Some(None)`) from one that is absent (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `GET /api/customers/{id}`: the customer's settings, with the reply policy in full (defaults
/// included). Never a secret.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id("id", &id)?;
    let settings = customers::settings(state.db.pool()?, id)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    Ok(Json(render(&settings, None)))
}

/// `PATCH /api/customers/{id}`: changes what the body names; 200 with the customer. When a `notifyUrl`
/// is set for the first time (or `rotateNotifySecret` is true) the answer carries `notifySecret`, the key
/// of the notifications' signature, this once.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<CustomerChange>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id("id", &id)?;
    let Json(change) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let pool = state.db.pool()?;
    let current = customers::settings(pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    let mut update = Update {
        name: change.name.as_deref().map(valid_name).transpose()?,
        system_prompt: change.system_prompt.map(valid_prompt).transpose()?,
        messenger_enabled: change.messenger_enabled,
        pass_thread_on_request: change.pass_thread_on_request,
        ..Update::default()
    };
    if let Some(policy) = change.reply_policy {
        let merged = current.reply_policy.0.clone().merged(policy);
        merged
            .validate()
            .map_err(|reason| ApiError::bad_request("invalid_reply_policy", reason))?;
        update.reply_policy = Some(merged);
    }
    if let Some(message) = change.handoff_message {
        update.handoff_message = Some(message.map(valid_handoff_message).transpose()?);
    }
    if let Some(url) = change.notify_url {
        update.notify_url = Some(url.map(valid_notify_url).transpose()?);
    }
    let wants_secret = change.rotate_notify_secret
        || (!current.has_notify_secret && matches!(update.notify_url, Some(Some(_))));
    let secret = wants_secret.then(new_secret);
    if let Some(secret) = &secret {
        let aad = notify_secret_associated_data(id);
        let plain = SecretString::from(secret.clone());
        update.notify_secret_enc = Some(state.connector.keyring.encrypt(&plain, aad.as_bytes()));
    }
    let settings = customers::update(pool, id, update)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    tracing::info!(customer_id = %id, new_secret = secret.is_some(), "customer settings changed");
    Ok(Json(render(&settings, secret.as_deref())))
}

fn valid_handoff_message(message: String) -> Result<String, ApiError> {
    let message = message.trim().to_owned();
    if message.is_empty() || message.chars().count() > MAX_FIXED_REPLY_CHARS {
        return Err(ApiError::bad_request(
            "invalid_handoff_message",
            format!(
                "handoffMessage must be 1 to {MAX_FIXED_REPLY_CHARS} characters, or null for the default"
            ),
        ));
    }
    Ok(message)
}

fn valid_notify_url(url: String) -> Result<String, ApiError> {
    let url = url.trim().to_owned();
    if !is_callable_url(&url) || url.len() > MAX_URL {
        return Err(ApiError::bad_request(
            "invalid_notify_url",
            format!(
                "notifyUrl must be an absolute http(s) URL without credentials, at most {MAX_URL} characters"
            ),
        ));
    }
    Ok(url)
}

/// 32 random bytes, URL-safe base64: the notifications' HMAC key as the business stores it.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The API's JSON for a customer; `secret` only in the answer that created it.
fn render(settings: &Settings, secret: Option<&str>) -> serde_json::Value {
    let mut customer = serde_json::json!({
        "id": settings.id,
        "name": settings.name,
        "systemPrompt": settings.system_prompt,
        "replyPolicy": settings.reply_policy.0.effective(),
        "handoffMessage": settings.handoff_message.as_deref().unwrap_or(DEFAULT_HANDOFF_MESSAGE),
        "handoffMessageIsDefault": settings.handoff_message.is_none(),
        "notifyUrl": settings.notify_url,
        "hasNotifySecret": settings.has_notify_secret,
        "messengerEnabled": settings.messenger_enabled,
        "passThreadOnRequest": settings.pass_thread_on_request,
        "createdAt": settings.created_at,
        "updatedAt": settings.updated_at,
    });
    if let Some(secret) = secret {
        customer["notifySecret"] = secret.into();
    }
    customer
}
