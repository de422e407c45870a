//! The OpenAI-compatible chat-completions fake, `POST /ai/v1/chat/completions`.
//!
//! The answer is deterministic and quotes what the service asked about: every `user` message after the
//! last `assistant` message, joined (`Re: hi | I want to order | the blue one`). A test can therefore see
//! from the reply alone whether a burst was merged into one AI call and whether history was passed. A fixed
//! answer ([`crate::SimHandle::set_ai_reply`]) and a latency ([`crate::SimHandle::set_ai_latency`]) can be
//! set; faults apply through [`crate::FaultTarget::Ai`].
//!
//! Tools (OpenAI's function calling): the names a request offers are recorded. When it offers
//! [`HANDOFF_TOOL`] and an unanswered user message asks for a person ("talk to a human", "real person"),
//! or a handoff is forced ([`crate::SimHandle::set_ai_handoff`]), the answer is a call to that tool
//! (`content: null`, `finish_reason: "tool_calls"`) instead of text. A request without the tool never gets
//! a tool call.

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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The function tool the service offers when a conversation may be handed to a person (CONTRACT.md,
/// "Conversation behaviour").
pub const HANDOFF_TOOL: &str = "handoff_to_human";

/// The reason the fake gives when it hands off because the customer asked for a person.
pub const ASKED_FOR_PERSON: &str = "customer asked for a person";

/// What a customer writes, in any case, when they want a person rather than the bot.
const PERSON_PHRASES: [&str; 2] = ["talk to a human", "real person"];

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
    /// `[{"type":"function","function":{"name",...}}]`; `null` is taken as none. Only the names are
    /// read: the rest (descriptions, parameter schemas) is skipped, not built into a tree, since every
    /// request of a benchmark carries it.
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    /// The most tokens the answer may have; the fake's answers are never cut, but tests check it is set.
    #[serde(default)]
    max_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct WireTool {
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
}

/// The names of the function tools offered, in order.
fn tool_names(tools: Vec<WireTool>) -> Vec<String> {
    tools.into_iter().filter_map(|t| t.function?.name).collect()
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

/// The user messages after the last assistant message: what the answer must respond to.
fn unanswered(messages: &[ChatMessage]) -> impl Iterator<Item = &ChatMessage> {
    let start = messages
        .iter()
        .rposition(|m| m.role == "assistant")
        .map_or(0, |i| i + 1);
    messages[start..].iter().filter(|m| m.role == "user")
}

/// The quoting answer: `Re: ` and every user message after the last assistant message, joined by ` | `.
pub fn quoting_reply(messages: &[ChatMessage]) -> String {
    let quoted: Vec<&str> = unanswered(messages).map(|m| m.content.as_str()).collect();
    format!("Re: {}", quoted.join(" | "))
}

/// The reason to call [`HANDOFF_TOOL`] with, or `None` to answer with text: only when the tool is
/// offered, then always when a handoff is `forced` (with that reason), else when an unanswered user
/// message asks for a person ([`ASKED_FOR_PERSON`]).
pub fn handoff_reason(tools: &[String], messages: &[ChatMessage], forced: Option<&str>) -> Option<String> {
    if !tools.iter().any(|t| t == HANDOFF_TOOL) {
        return None;
    }
    if let Some(reason) = forced {
        return Some(reason.to_string());
    }
    unanswered(messages)
        .any(|m| {
            let text = m.content.to_lowercase();
            PERSON_PHRASES.iter().any(|p| text.contains(p))
        })
        .then(|| ASKED_FOR_PERSON.to_string())
}

/// What the fake answers with.
enum Answer {
    Text(String),
    /// A call to [`HANDOFF_TOOL`] with this reason.
    Handoff(String),
}

async fn chat_completions(State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<CompletionRequest>(&body);
    let (model, messages, tools, max_tokens) = match parsed {
        Ok(request) => (
            request.model,
            request
                .messages
                .into_iter()
                .map(WireMessage::into_chat)
                .collect::<Vec<_>>(),
            tool_names(request.tools.unwrap_or_default()),
            request.max_tokens,
        ),
        Err(error) => {
            state.records.ai(|| AiRequest {
                model: String::new(),
                messages: Vec::new(),
                tools: Vec::new(),
                max_tokens: None,
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
        tools: tools.clone(),
        max_tokens,
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
    let answer = match handoff_reason(&tools, &messages, settings.ai_handoff.as_deref()) {
        Some(reason) => Answer::Handoff(reason),
        None => Answer::Text(settings.ai_reply.unwrap_or_else(|| quoting_reply(&messages))),
    };
    Json(completion(&model, &messages, answer)).into_response()
}

/// OpenAI's response shape, with token counts estimated at four bytes per token.
fn completion(model: &str, messages: &[ChatMessage], answer: Answer) -> Value {
    let prompt_tokens: usize = messages.iter().map(|m| m.content.len().div_ceil(4)).sum();
    let (message, finish_reason, completion_bytes) = match answer {
        Answer::Text(content) => {
            let bytes = content.len();
            (json!({ "role": "assistant", "content": content }), "stop", bytes)
        }
        Answer::Handoff(reason) => {
            let arguments = json!({ "reason": reason }).to_string();
            let bytes = arguments.len();
            let call = json!({
                "id": next_call_id(),
                "type": "function",
                "function": { "name": HANDOFF_TOOL, "arguments": arguments },
            });
            let message = json!({ "role": "assistant", "content": null, "tool_calls": [call] });
            (message, "tool_calls", bytes)
        }
    };
    let completion_tokens = completion_bytes.div_ceil(4);
    json!({
        "id": format!("chatcmpl-sim{}", uuid::Uuid::new_v4().simple()),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })
}

/// Tool-call ids are sequential rather than random so that two runs of a test produce the same bodies.
fn next_call_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("call_sim{:08}", NEXT.fetch_add(1, Ordering::Relaxed))
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

    #[test]
    fn a_request_for_a_person_is_a_handoff_only_when_the_tool_is_offered() {
        let tools = [HANDOFF_TOOL.to_string()];
        let asking = [msg("user", "hi"), msg("user", "Can I TALK TO A HUMAN please")];
        assert_eq!(
            handoff_reason(&tools, &asking, None).as_deref(),
            Some(ASKED_FOR_PERSON)
        );
        assert_eq!(handoff_reason(&[], &asking, None), None);
        assert_eq!(handoff_reason(&["other".to_string()], &asking, Some("x")), None);
        let answered = [
            msg("user", "a real person?"),
            msg("assistant", "sure"),
            msg("user", "ok"),
        ];
        assert_eq!(
            handoff_reason(&tools, &answered, None),
            None,
            "only unanswered messages count"
        );
        assert_eq!(
            handoff_reason(&tools, &answered, Some("forced")).as_deref(),
            Some("forced")
        );
    }

    #[test]
    fn offered_tool_names_are_read_from_the_function_objects() {
        let tools: Vec<WireTool> = serde_json::from_str(
            r#"[{"type":"function","function":{"name":"handoff_to_human","parameters":{}}},{"type":"x"}]"#,
        )
        .unwrap();
        assert_eq!(tool_names(tools), vec![HANDOFF_TOOL.to_string()]);
    }
}
