//! The Send API (`POST /me/messages` or `/{id}/messages`) and the echo webhooks it triggers.
//!
//! It enforces what Meta enforces and the service must respect: a page token, a recipient, and text of at
//! most [`MAX_TEXT_BYTES`] UTF-8 bytes. Accepted messages are recorded in order; when echoes are on, the
//! sim then posts Meta's `is_echo` webhook for the message, before or after answering ([`EchoMode`]).

use super::GraphCall;
use crate::meta_error::MetaError;
use crate::records::{EchoDelivery, RejectedSend, SentMessage};
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

pub(crate) async fn send(state: &Arc<SimState>, call: &GraphCall) -> Result<Response, MetaError> {
    let account = match call.owner(state)? {
        TokenOwner::Page(account) => account,
        TokenOwner::User(_) => {
            return Err(MetaError::new(
                210,
                None,
                "(#210) A page access token is required to request this resource.",
            ))
        }
    };
    let request: SendRequest = serde_json::from_slice(&call.body)
        .map_err(|e| MetaError::invalid_parameter(format!("Invalid JSON for postbody: {e}")))?;
    let recipient_id = request
        .recipient
        .and_then(|r| r.id)
        .ok_or_else(|| MetaError::invalid_parameter("The parameter recipient is required"))?;
    if request.sender_action.is_some() {
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
    if text.len() > MAX_TEXT_BYTES {
        let error = MetaError::new(
            100,
            Some(2_534_015),
            format!("(#100) Length of param message[text] must be less than or equal to {MAX_TEXT_BYTES}"),
        );
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
            let body = webhook::echo(
                &sent.ig_account_id,
                &sent.recipient_id,
                &sent.message_id,
                &sent.text,
                sent.received_at.timestamp_millis(),
            );
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
