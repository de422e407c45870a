//! The AI provider: an OpenAI-compatible `POST /chat/completions`, with a timeout and jittered
//! exponential retries of transient failures (`backon`).

use backon::{ExponentialBuilder, Retryable};
use omnidm_shared::config::AiConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One message of the conversation as the AI sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// Why the AI gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// Timeouts, connection errors, 429 and 5xx: worth retrying later.
    #[error("AI temporarily unavailable: {0}")]
    Transient(String),
    /// A 4xx other than 429, or an answer we cannot read: retrying the same request will not help.
    #[error("AI request rejected: {0}")]
    Permanent(String),
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
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
}

#[derive(Deserialize)]
struct Response {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChatMessage,
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
        }
    }

    /// Asks for the assistant's next message, retrying transient failures a couple of times in process.
    #[tracing::instrument(name = "ai", skip_all, fields(messages = messages.len()))]
    pub async fn complete(&self, messages: &[ChatMessage]) -> Result<String, AiError> {
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

    async fn once(&self, messages: &[ChatMessage]) -> Result<String, AiError> {
        let mut request = self.http.post(&self.url).json(&Request {
            model: &self.model,
            messages,
        });
        if !self.api_key.expose_secret().is_empty() {
            request = request.bearer_auth(self.api_key.expose_secret());
        }
        let response = request
            .send()
            .await
            .map_err(|e| AiError::Transient(omnidm_shared::meta::graph::describe(&e)))?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            return Err(AiError::Transient(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(AiError::Permanent(format!("HTTP {status}")));
        }
        let body: Response = response
            .json()
            .await
            .map_err(|e| AiError::Transient(omnidm_shared::meta::graph::describe(&e)))?;
        body.choices
            .into_iter()
            .next()
            .map(|c| c.message.content)
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| AiError::Permanent("empty answer".into()))
    }
}
