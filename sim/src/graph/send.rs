//! The Send API (`POST /me/messages` or `/{id}/messages`) and the echo webhooks it triggers.
//!
//! It enforces what Meta enforces and the service must respect: a page token, a recipient, text of at
//! most [`MAX_TEXT_BYTES`] UTF-8 bytes, and no message into a thread another app controls (Handover
//! Protocol, error 10/2018300). Accepted messages are recorded in order; when echoes are on, the sim then
//! posts Meta's `is_echo` webhook for the message, before or after answering ([`EchoMode`]): Instagram-
//! shaped, or Messenger-shaped for a recipient registered as a Messenger user. Sender actions
//! (`typing_on`, ...) are recorded apart: they are not messages and have no echo.

use super::GraphCall;
use crate::account::SimAccount;
use crate::meta_error::MetaError;
use crate::records::{EchoDelivery, RejectedSend, SenderAction, SentMessage};
use crate::server::EchoMode;
use crate::state::{lock, SimState, TokenOwner};
use crate::webhook::{self, WebhookClient};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Meta's limit on message text: "UTF-8 and be a 1000 bytes or less".
pub const MAX_TEXT_BYTES: usize = 1000;

/// The sender actions Meta accepts for Instagram and Messenger conversations.
pub const SENDER_ACTIONS: [&str; 3] = ["typing_on", "typing_off", "mark_seen"];

#[derive(Debug, Deserialize)]
struct SendRequest {
    recipient: Option<Recipient>,
    message: Option<serde_json::Value>,
    messaging_type: Option<String>,
    tag: Option<String>,
    sender_action: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Recipient {
    id: Option<String>,
}

/// The token's page, or 210 for a user token: the Send API and the Handover Protocol act as a page.
pub(crate) fn page_account(state: &SimState, call: &GraphCall) -> Result<SimAccount, MetaError> {
    match call.owner(state)? {
        TokenOwner::Page(account) => Ok(account),
        TokenOwner::User(_) => Err(MetaError::new(
            210,
            None,
            "(#210) A page access token is required to request this resource.",
        )),
    }
}

pub(crate) async fn send(state: &Arc<SimState>, call: &GraphCall) -> Result<Response, MetaError> {
    let account = page_account(state, call)?;
    let request: SendRequest = serde_json::from_slice(&call.body)
        .map_err(|e| MetaError::invalid_parameter(format!("Invalid JSON for postbody: {e}")))?;
    let recipient_id = request
        .recipient
        .and_then(|r| r.id)
        .ok_or_else(|| MetaError::invalid_parameter("The parameter recipient is required"))?;
    if let Some(action) = request.sender_action {
        if !SENDER_ACTIONS.contains(&action.as_str()) {
            return Err(MetaError::invalid_parameter(format!(
                "param sender_action must be one of {{typing_on, typing_off, mark_seen}}, got {action:?}"
            )));
        }
        state.records.sender_action(SenderAction {
            page_id: account.page_id,
            ig_account_id: account.ig_account_id,
            recipient_id: recipient_id.clone(),
            action,
            at: chrono::Utc::now(),
        });
        return Ok(Json(json!({ "recipient_id": recipient_id })).into_response());
    }
    let message = request
        .message
        .ok_or_else(|| MetaError::invalid_parameter("param message must be non-empty."))?;
    let text = message
        .get("text")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_string();
    let has_attachment = message.get("attachment").is_some() || message.get("attachments").is_some();
    if text.is_empty() && !has_attachment {
        return Err(MetaError::invalid_parameter("param message must be non-empty."));
    }
    let controlled_elsewhere = lock(&state.threads)
        .owner(&account.ig_account_id, &recipient_id)
        .is_some();
    let refusal = if controlled_elsewhere {
        Some(MetaError::new(
            10,
            Some(2_018_300),
            "(#10) Another app is controlling this thread now.",
        ))
    } else if text.len() > MAX_TEXT_BYTES {
        Some(MetaError::new(
            100,
            Some(2_534_015),
            format!("(#100) Length of param message[text] must be less than or equal to {MAX_TEXT_BYTES}"),
        ))
    } else {
        None
    };
    if let Some(error) = refusal {
        state.records.rejected(RejectedSend {
            recipient_id: Some(recipient_id),
            text_bytes: text.len(),
            code: error.code,
            subcode: error.subcode,
            at: chrono::Utc::now(),
        });
        return Err(error);
    }

    let sent = SentMessage {
        page_id: account.page_id,
        ig_account_id: account.ig_account_id,
        recipient_id,
        text,
        messaging_type: request.messaging_type,
        tag: request.tag,
        message_id: format!("m_sim_{}", uuid::Uuid::new_v4().simple()),
        received_at: chrono::Utc::now(),
    };
    let body = json!({ "recipient_id": sent.recipient_id, "message_id": sent.message_id });
    state.records.sent(sent.clone());
    let echo_mode = lock(&state.settings).echo;
    match echo_mode {
        EchoMode::Off => {}
        EchoMode::BeforeResponse => deliver_echo(state, &sent).await,
        EchoMode::AfterResponse => {
            let state = state.clone();
            tokio::spawn(async move { deliver_echo(&state, &sent).await });
        }
    }
    Ok(Json(body).into_response())
}

/// Posts the signed echo of `sent` to the configured webhook and records the outcome.
async fn deliver_echo(state: &SimState, sent: &SentMessage) {
    let settings = state.settings();
    let outcome = match (settings.echo_url, settings.echo_secret) {
        (Some(url), Some(secret)) => {
            let body = echo_body(state, sent);
            WebhookClient::with_client(state.http.clone(), url, secret.as_bytes())
                .post(body)
                .await
                .map(|status| status.as_u16())
                .map_err(|e| e.to_string())
        }
        _ => Err("echo is on but no webhook URL and app secret are set".to_string()),
    };
    if let Err(error) = &outcome {
        tracing::warn!(message_id = %sent.message_id, %error, "echo delivery failed");
    }
    state.records.echo(EchoDelivery {
        message_id: sent.message_id.clone(),
        status: outcome.as_ref().ok().copied(),
        error: outcome.err(),
    });
}

/// The echo Meta would post for `sent`: Messenger-shaped (`object: page`, the Page as sender) for a
/// registered Messenger user, Instagram-shaped otherwise; both carry the sim's app id, as Meta's echoes of
/// API sends do.
fn echo_body(state: &SimState, sent: &SentMessage) -> Vec<u8> {
    let messenger = lock(&state.threads).is_messenger_user(&sent.recipient_id);
    if messenger {
        webhook::messenger_echo(
            &sent.page_id,
            &sent.recipient_id,
            &sent.message_id,
            &sent.text,
            sent.received_at.timestamp_millis(),
            state.app_id(),
        )
    } else {
        webhook::api_echo(
            &sent.ig_account_id,
            &sent.recipient_id,
            &sent.message_id,
            &sent.text,
            sent.received_at.timestamp_millis(),
            state.app_id(),
        )
    }
}
