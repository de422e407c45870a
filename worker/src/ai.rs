//! The AI provider: an OpenAI-compatible `POST /chat/completions`, with a timeout and jittered
//! exponential retries of transient failures (`backon`). Every request offers one tool,
//! `handoff_to_human`: the AI's way to hand the conversation to a person (`docs/conversation.md`).

use backon::{ExponentialBuilder, Retryable};
use omnidm_shared::config::AiConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::OnceLock;
use std::time::Duration;

/// One message of the conversation as the AI sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// Why the AI gave no answer, classified by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// Timeouts, connection errors, 408, 409, 429 and 5xx: worth retrying later.
    #[error("AI temporarily unavailable: {0}")]
    Transient(String),
    /// The conversation does not fit the model's context: ask again with less history, once.
    #[error("AI context length exceeded: {0}")]
    ContextTooLong(String),
    /// Any other 4xx (a bad key, a refused request), or an answer we cannot read: the same request
    /// will not succeed by retrying, only once someone fixes the cause.
    #[error("AI request rejected: {0}")]
    Permanent(String),
}

impl AiError {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            AiError::Transient(_) => "transient",
            AiError::ContextTooLong(_) => "context_too_long",
            AiError::Permanent(_) => "permanent",
        }
    }
}

/// Client for the configured provider.
#[derive(Clone)]
pub struct AiClient {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: SecretString,
    /// In-process retries before the job is handed to the delayed-retry queues.
    retries: usize,
    /// `max_tokens` of every request.
    max_tokens: u32,
}

/// What the AI answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Text for the customer.
    Text(String),
    /// The AI called `handoff_to_human`: a person should take over. Any text it wrote is not sent.
    Handoff {
        /// Why, in the AI's words (for the business's notification and audit trail).
        reason: String,
    },
}

/// The escalation tool's name, as the contract fixes it.
pub const HANDOFF_TOOL: &str = "handoff_to_human";

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    tools: &'a RawValue,
    max_tokens: u32,
}

#[derive(Deserialize)]
struct Response {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: AnswerMessage,
}

/// The assistant's message: `content` may be null when it calls a tool.
#[derive(Deserialize)]
struct AnswerMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

#[derive(Deserialize)]
struct ToolCall {
    function: FunctionCall,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    /// A JSON object serialised as a string (OpenAI's format); models sometimes send broken JSON.
    #[serde(default)]
    arguments: String,
}

/// The `tools` member of every request, serialised once: it is the same for every request.
fn tools() -> &'static RawValue {
    static TOOLS: OnceLock<Box<RawValue>> = OnceLock::new();
    TOOLS.get_or_init(|| {
        serde_json::value::to_raw_value(&tool_definitions()).expect("a JSON value serialises")
    })
}

fn tool_definitions() -> serde_json::Value {
    serde_json::json!([{
        "type": "function",
        "function": {
            "name": HANDOFF_TOOL,
            "description": "Hand this conversation to a person of the business. Call it when the customer \
                asks for a human, when they are upset, or when you cannot help with their request. The \
                customer is told that a person will answer.",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string", "description": "Why a person should take over, in a few words."}},
                "required": ["reason"],
            },
        },
    }])
}

/// An error answer, by its HTTP status and OpenAI's error `code` (`{"error":{"code",…}}`).
fn classify(status: u16, body: &[u8]) -> AiError {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.get("code")?.as_str().map(str::to_owned));
    let detail = match &code {
        Some(code) => format!("HTTP {status} {code}"),
        None => format!("HTTP {status}"),
    };
    match status {
        408 | 409 | 429 | 500..=599 => AiError::Transient(detail),
        _ if code.as_deref() == Some("context_length_exceeded") => AiError::ContextTooLong(detail),
        _ => AiError::Permanent(detail),
    }
}

impl AnswerMessage {
    fn into_answer(self) -> Result<Answer, AiError> {
        if let Some(call) = self.tool_calls.iter().find(|c| c.function.name == HANDOFF_TOOL) {
            let reason = serde_json::from_str::<serde_json::Value>(&call.function.arguments)
                .ok()
                .and_then(|args| args.get("reason")?.as_str().map(str::to_owned))
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| "no reason given".to_owned());
            return Ok(Answer::Handoff { reason });
        }
        self.content
            .filter(|c| !c.trim().is_empty())
            .map(Answer::Text)
            .ok_or_else(|| AiError::Permanent("empty answer".into()))
    }
}

impl AiClient {
    /// Builds the client.
    pub fn new(config: &AiConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a TLS-capable HTTP client builds");
        Self {
            http,
            url: format!("{}/chat/completions", config.ai_base_url.trim_end_matches('/')),
            model: config.ai_model.clone(),
            api_key: config.ai_api_key.clone(),
            retries: 2,
            max_tokens: config.ai_max_tokens,
        }
    }

    /// Asks for the assistant's next message, retrying transient failures a couple of times in process.
    #[tracing::instrument(name = "ai", skip_all, fields(messages = messages.len()))]
    pub async fn complete(&self, messages: &[ChatMessage]) -> Result<Answer, AiError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .with_max_times(self.retries);
        (|| self.once(messages))
            .retry(backoff)
            .when(|e| matches!(e, AiError::Transient(_)))
            .notify(|error, wait| tracing::warn!(%error, ?wait, "AI call failed; retrying"))
            .await
    }

    async fn once(&self, messages: &[ChatMessage]) -> Result<Answer, AiError> {
        let mut request = self.http.post(&self.url).json(&Request {
            model: &self.model,
            messages,
            tools: tools(),
            max_tokens: self.max_tokens,
        });
        if !self.api_key.expose_secret().is_empty() {
            request = request.bearer_auth(self.api_key.expose_secret());
        }
        let response = request
            .send()
            .await
            .map_err(|e| AiError::Transient(omnidm_shared::meta::graph::describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(classify(status.as_u16(), &body));
        }
        let body: Response = response
            .json()
            .await
            .map_err(|e| AiError::Transient(omnidm_shared::meta::graph::describe(&e)))?;
        body.choices
            .into_iter()
            .next()
            .ok_or_else(|| AiError::Permanent("no choices in the answer".into()))?
            .message
            .into_answer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(message: &str) -> Result<Answer, AiError> {
        serde_json::from_str::<AnswerMessage>(message)
            .unwrap()
            .into_answer()
    }

    #[test]
    fn a_tool_call_is_a_handoff_and_its_text_is_not_sent() {
        let answer = read(
            r#"{"role":"assistant","content":"Let me get someone","tool_calls":[{"id":"call_1","type":"function",
                "function":{"name":"handoff_to_human","arguments":"{\"reason\":\"wants a refund\"}"}}]}"#,
        );
        assert_eq!(
            answer.unwrap(),
            Answer::Handoff {
                reason: "wants a refund".into()
            }
        );
        let broken = read(
            r#"{"content":null,"tool_calls":[{"function":{"name":"handoff_to_human","arguments":"{oops"}}]}"#,
        );
        assert_eq!(
            broken.unwrap(),
            Answer::Handoff {
                reason: "no reason given".into()
            }
        );
    }

    #[test]
    fn errors_are_classified_by_status_and_openais_code() {
        let context = br#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        assert!(matches!(classify(400, context), AiError::ContextTooLong(_)));
        assert!(matches!(
            classify(401, br#"{"error":{"code":"invalid_api_key"}}"#),
            AiError::Permanent(_)
        ));
        assert!(matches!(classify(400, b"<html>"), AiError::Permanent(_)));
        for status in [408, 409, 429, 500, 503] {
            assert!(matches!(classify(status, b""), AiError::Transient(_)), "{status}");
        }
    }

    #[test]
    fn text_is_an_answer_and_nothing_is_an_error() {
        assert_eq!(read(r#"{"content":"Hi!"}"#).unwrap(), Answer::Text("Hi!".into()));
        assert!(read(r#"{"content":null}"#).is_err());
        assert!(read(r#"{"content":"hi","tool_calls":[{"function":{"name":"other_tool"}}]}"#).is_ok());
    }
}
