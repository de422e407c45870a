//! The OpenAI-compatible chat-completions fake, `POST /ai/v1/chat/completions`.
//!
//! The answer is deterministic and quotes what the service asked about: every `user` message after the
//! last `assistant` message, joined (`Re: hi | I want to order | the blue one`). A test can therefore see
//! from the reply alone whether a burst was merged into one AI call and whether history was passed. A fixed
//! answer ([`crate::SimHandle::set_ai_reply`]) and a latency ([`crate::SimHandle::set_ai_latency`]) can be
//! set; faults apply through [`crate::FaultTarget::Ai`].

use crate::fault::{self, FaultTarget, Proceed};
use crate::meta_error::MetaError;
use crate::records::{AiRequest, ChatMessage};
use crate::state::SimState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The AI routes.
pub(crate) fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/ai/v1/chat/completions", post(chat_completions))
        .route("/ai/v1/models", get(models))
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: String,
    messages: Vec<WireMessage>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

impl WireMessage {
    /// Content as text: a string, or the `text` parts of an array of content parts.
    fn into_chat(self) -> ChatMessage {
        let content = match self.content {
            Value::String(s) => s,
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text")?.as_str())
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        };
        ChatMessage {
            role: self.role,
            content,
        }
    }
}

/// The quoting answer: `Re: ` and every user message after the last assistant message, joined by ` | `.
pub fn quoting_reply(messages: &[ChatMessage]) -> String {
    let start = messages
        .iter()
        .rposition(|m| m.role == "assistant")
        .map_or(0, |i| i + 1);
    let quoted: Vec<&str> = messages[start..]
        .iter()
        .filter(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .collect();
    format!("Re: {}", quoted.join(" | "))
}

async fn chat_completions(State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<CompletionRequest>(&body);
    let (model, messages) = match parsed {
        Ok(request) => (
            request.model,
            request
                .messages
                .into_iter()
                .map(WireMessage::into_chat)
                .collect::<Vec<_>>(),
        ),
        Err(error) => {
            state.records.ai(|| AiRequest {
                model: String::new(),
                messages: Vec::new(),
                has_authorization: headers.contains_key(header::AUTHORIZATION),
                at: chrono::Utc::now(),
            });
            let body = json!({"error": {"message": format!("invalid request: {error}"), "type": "invalid_request_error"}});
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    state.records.ai(|| AiRequest {
        model: model.clone(),
        messages: messages.clone(),
        has_authorization: headers.contains_key(header::AUTHORIZATION),
        at: chrono::Utc::now(),
    });
    let proceed = match fault::apply(state.take_fault(FaultTarget::Ai), || "ai".to_string()).await {
        Ok(proceed) => proceed,
        Err(response) => return response,
    };
    let settings = state.settings();
    if !settings.ai_latency.is_zero() {
        tokio::time::sleep(settings.ai_latency).await;
    }
    if proceed == Proceed::ThenFail {
        return MetaError::sent_but_error().into_response();
    }
    let content = settings.ai_reply.unwrap_or_else(|| quoting_reply(&messages));
    Json(completion(&model, &messages, content)).into_response()
}

/// OpenAI's response shape, with token counts estimated at four bytes per token.
fn completion(model: &str, messages: &[ChatMessage], content: String) -> Value {
    let prompt_tokens: usize = messages.iter().map(|m| m.content.len().div_ceil(4)).sum();
    let completion_tokens = content.len().div_ceil(4);
    json!({
        "id": format!("chatcmpl-sim{}", uuid::Uuid::new_v4().simple()),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })
}

async fn models() -> Json<Value> {
    Json(json!({ "object": "list", "data": [{ "id": "gpt-4o-mini", "object": "model", "owned_by": "sim" }] }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
        }
    }

    #[test]
    fn the_reply_quotes_user_messages_after_the_last_assistant_message() {
        let messages = [
            msg("system", "be nice"),
            msg("user", "old"),
            msg("assistant", "answer"),
            msg("user", "hi"),
            msg("user", "I want to order"),
            msg("user", "the blue one"),
        ];
        assert_eq!(
            quoting_reply(&messages),
            "Re: hi | I want to order | the blue one"
        );
        assert_eq!(quoting_reply(&messages[..2]), "Re: old");
    }

    #[test]
    fn array_content_is_flattened_to_its_text() {
        let wire: WireMessage = serde_json::from_str(
            r#"{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(wire.into_chat().content, "ab");
    }
}
