//! Configuration: every setting is an environment variable and a command-line flag, with its default
//! shown by `--help`. Variable names are those of the external contract (`CONTRACT.md`), so an existing
//! Meta app setup and `.env` keep working.
//!
//! Groups are `clap::Args` so each binary flattens exactly what it needs. Secrets are
//! [`SecretString`]s (never printed by `Debug`) and their values are hidden from `--help`. Values that
//! need more than clap's parsing are checked by `validate()` at start, and a bad one stops the process
//! with a message that names the variable but never echoes a secret.

use crate::crypto::Keyring;
use crate::signature::WebhookVerifier;
use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// A configuration value that is present but unusable. The message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it, without its (possibly secret) value.
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            reason: reason.into(),
        }
    }
}

/// PostgreSQL connection settings.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL URL; the database is created if missing and migrations run at start.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/omnidm",
        hide_env_values = true
    )]
    pub database_url: SecretString,
    /// Largest number of pooled connections per process.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
}

/// RabbitMQ connection settings and the prefix every exchange and queue name starts with.
#[derive(Debug, Clone, Args)]
pub struct AmqpConfig {
    /// RabbitMQ URL (3.10 or newer; no plugins needed).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: SecretString,
    /// Prefix of every exchange and queue name, so several deployments (or tests) share one broker.
    #[arg(long, env = "QUEUE_PREFIX", default_value = "omnidm")]
    pub queue_prefix: String,
}

/// Logging.
#[derive(Debug, Clone, Args)]
pub struct TelemetryConfig {
    /// `text` for people, `json` for log pipelines.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which Meta login flavour the app uses; decides token kinds and Graph hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetaLogin {
    /// Facebook Login, Page-linked Instagram accounts (the seed's flow).
    Facebook,
    /// Instagram Login, no Facebook Page.
    Instagram,
}

impl MetaLogin {
    /// The value stored in `instagram_credentials.login`.
    pub fn as_stored(self) -> &'static str {
        match self {
            MetaLogin::Facebook => "facebook",
            MetaLogin::Instagram => "instagram",
        }
    }

    /// Reads a stored value; anything but `instagram` is the seed's Facebook Login.
    pub fn from_stored(value: &str) -> Self {
        if value == "instagram" {
            MetaLogin::Instagram
        } else {
            MetaLogin::Facebook
        }
    }
}

/// Meta app settings shared by webhook verification, the OAuth flow and Graph calls.
#[derive(Debug, Clone, Args)]
pub struct MetaConfig {
    /// Meta app secret(s), comma-separated: the first is used for API calls, all verify webhook signatures.
    #[arg(long, env = "INSTAGRAM_APP_SECRET", hide_env_values = true)]
    pub instagram_app_secret: SecretString,
    /// Graph API base URL including its version.
    #[arg(
        long,
        env = "META_GRAPH_URL",
        default_value = "https://graph.facebook.com/v25.0"
    )]
    pub meta_graph_url: String,
    /// `facebook` (Page-linked, as in the seed) or `instagram` (Instagram Login).
    #[arg(long, env = "META_LOGIN", value_enum, default_value_t = MetaLogin::Facebook)]
    pub meta_login: MetaLogin,
    /// Instagram Login's Graph host including its version (`graph.instagram.com`): sends, token
    /// exchange and refresh for accounts connected with `META_LOGIN=instagram`.
    #[arg(
        long,
        env = "META_INSTAGRAM_GRAPH_URL",
        default_value = "https://graph.instagram.com/v25.0"
    )]
    pub meta_instagram_graph_url: String,
}

impl MetaConfig {
    /// Every configured app secret, in order. Errors if the list is empty.
    pub fn app_secrets(&self) -> Result<Vec<SecretString>, ConfigError> {
        let secrets: Vec<SecretString> = self
            .instagram_app_secret
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.to_owned()))
            .collect();
        if secrets.is_empty() {
            return Err(ConfigError::new("INSTAGRAM_APP_SECRET", "no secret given"));
        }
        Ok(secrets)
    }

    /// A verifier accepting a signature by any configured secret.
    pub fn webhook_verifier(&self) -> Result<WebhookVerifier, ConfigError> {
        Ok(WebhookVerifier::new(self.app_secrets()?))
    }

    /// Checks the values clap could not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.app_secrets()?;
        validate_url("META_GRAPH_URL", &self.meta_graph_url)?;
        validate_url("META_INSTAGRAM_GRAPH_URL", &self.meta_instagram_graph_url)
    }

    /// The app secret used to call Meta (the first of the list).
    pub fn api_secret(&self) -> Result<SecretString, ConfigError> {
        Ok(self.app_secrets()?.swap_remove(0))
    }
}

/// The AI provider (any OpenAI-compatible chat-completions API).
#[derive(Debug, Clone, Args)]
pub struct AiConfig {
    /// Base URL of an OpenAI-compatible API.
    #[arg(long, env = "AI_BASE_URL", default_value = "https://api.openai.com/v1")]
    pub ai_base_url: String,
    /// Sent as `Authorization: Bearer` when set.
    #[arg(
        long,
        env = "AI_API_KEY",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub ai_api_key: SecretString,
    /// Model name passed through to the API.
    #[arg(long, env = "AI_MODEL", default_value = "gpt-4o-mini")]
    pub ai_model: String,
    /// Time limit for one AI call, in milliseconds.
    #[arg(long, env = "AI_TIMEOUT_MS", default_value_t = 30_000)]
    pub ai_timeout_ms: u64,
    /// Most tokens the AI may write for one reply (`max_tokens` on every request): whatever a stranger
    /// writes, one answer costs a bounded amount. 600 tokens is about three Instagram messages.
    #[arg(long, env = "AI_MAX_TOKENS", default_value_t = 600)]
    pub ai_max_tokens: u32,
}

impl AiConfig {
    /// Checks the values clap could not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ai_max_tokens == 0 {
            return Err(ConfigError::new("AI_MAX_TOKENS", "must be at least 1"));
        }
        validate_url("AI_BASE_URL", &self.ai_base_url)
    }

    /// The per-call time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.ai_timeout_ms)
    }
}

/// Keys that encrypt access tokens at rest.
#[derive(Debug, Clone, Args)]
pub struct CryptoConfig {
    /// Base64 of 32 random bytes: the AES-256-GCM key that encrypts tokens at rest.
    #[arg(long, env = "ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: SecretString,
    /// Comma-separated older keys, still accepted for decryption during a rotation.
    #[arg(
        long,
        env = "ENCRYPTION_KEYS_PREVIOUS",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub encryption_keys_previous: SecretString,
}

impl CryptoConfig {
    /// Builds the keyring, naming the variable whose key is malformed.
    pub fn keyring(&self) -> Result<Keyring, ConfigError> {
        let current = crate::crypto::Key::from_base64(self.encryption_key.expose_secret())
            .map_err(|e| ConfigError::new("ENCRYPTION_KEY", e.to_string()))?;
        let previous = self
            .encryption_keys_previous
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(crate::crypto::Key::from_base64)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new("ENCRYPTION_KEYS_PREVIOUS", e.to_string()))?;
        Ok(Keyring::new(current, previous))
    }
}

/// How conversations behave, for every process that changes who speaks in one (the worker, on an
/// echo of a person's reply; ingest, on an operator's reply through the API).
#[derive(Debug, Clone, Args)]
pub struct ConversationConfig {
    /// How long the AI stays quiet in a conversation after a person answered (from the Instagram app,
    /// or through `POST /api/conversations/{id}/messages`).
    #[arg(long, env = "HUMAN_PAUSE_MINUTES", default_value_t = 60, global = true)]
    pub human_pause_minutes: u64,
}

impl ConversationConfig {
    /// The pause after a person's reply.
    pub fn human_pause(&self) -> Duration {
        Duration::from_secs(self.human_pause_minutes * 60)
    }
}

/// The "Connect Instagram" OAuth flow and the dashboard it returns to.
#[derive(Debug, Clone, Args)]
pub struct ConnectConfig {
    /// The Meta app id (Instagram app id with `META_LOGIN=instagram`), sent as the dialog's `client_id`.
    #[arg(long, env = "INSTAGRAM_APP_ID")]
    pub instagram_app_id: String,
    /// Must equal the redirect URI configured in the Meta dashboard (it points at `/api/instagram/callback`).
    #[arg(long, env = "INSTAGRAM_REDIRECT_URI")]
    pub instagram_redirect_uri: String,
    /// The dashboard's base URL: the OAuth flow ends with a redirect to its integrations page.
    #[arg(long, env = "APP_URL", default_value = "http://localhost:3000")]
    pub app_url: String,
    /// Facebook Login dialog (`META_LOGIN=facebook`).
    #[arg(
        long,
        env = "META_OAUTH_DIALOG_URL",
        default_value = "https://www.facebook.com/v25.0/dialog/oauth"
    )]
    pub meta_oauth_dialog_url: String,
    /// Instagram Login authorize page (`META_LOGIN=instagram`).
    #[arg(
        long,
        env = "META_INSTAGRAM_AUTHORIZE_URL",
        default_value = "https://www.instagram.com/oauth/authorize"
    )]
    pub meta_instagram_authorize_url: String,
    /// Instagram Login code exchange endpoint (`META_LOGIN=instagram`).
    #[arg(
        long,
        env = "META_INSTAGRAM_TOKEN_URL",
        default_value = "https://api.instagram.com/oauth/access_token"
    )]
    pub meta_instagram_token_url: String,
}

impl ConnectConfig {
    /// Checks the values clap could not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.instagram_app_id.trim().is_empty() {
            return Err(ConfigError::new("INSTAGRAM_APP_ID", "must not be empty"));
        }
        validate_url("INSTAGRAM_REDIRECT_URI", &self.instagram_redirect_uri)?;
        validate_url("APP_URL", &self.app_url)?;
        validate_url("META_OAUTH_DIALOG_URL", &self.meta_oauth_dialog_url)?;
        validate_url("META_INSTAGRAM_AUTHORIZE_URL", &self.meta_instagram_authorize_url)?;
        validate_url("META_INSTAGRAM_TOKEN_URL", &self.meta_instagram_token_url)
    }
}

/// Shortest admin token accepted: a bearer token guessable by brute force protects nothing.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Checks that `value` is an absolute http(s) URL.
pub fn validate_url(variable: &'static str, value: &str) -> Result<(), ConfigError> {
    match reqwest_like_scheme(value) {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(ConfigError::new(
            variable,
            "expected an absolute http:// or https:// URL",
        )),
    }
}

fn reqwest_like_scheme(value: &str) -> Option<&str> {
    value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
}

/// Whether `value` is an absolute http(s) URL with a host and no credentials in it: what we accept as
/// an address to call (a business's notification URL).
pub fn is_callable_url(value: &str) -> bool {
    reqwest::Url::parse(value).is_ok_and(|url| {
        matches!(url.scheme(), "https" | "http")
            && url.host_str().is_some()
            && url.username().is_empty()
            && url.password().is_none()
    })
}

/// Checks that a required secret is not blank (clap accepts an empty environment variable).
pub fn require_non_empty(variable: &'static str, value: &SecretString) -> Result<(), ConfigError> {
    if value.expose_secret().trim().is_empty() {
        return Err(ConfigError::new(variable, "must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_secrets_are_split_on_commas_for_rotation() {
        let meta = MetaConfig {
            instagram_app_secret: SecretString::from(" a, b ,,".to_string()),
            meta_graph_url: "http://127.0.0.1:1/graph".into(),
            meta_login: MetaLogin::Facebook,
            meta_instagram_graph_url: "http://127.0.0.1:1/ig".into(),
        };
        let secrets: Vec<String> = meta
            .app_secrets()
            .unwrap()
            .iter()
            .map(|s| s.expose_secret().to_owned())
            .collect();
        assert_eq!(secrets, ["a", "b"]);
    }

    #[test]
    fn an_empty_secret_list_names_the_variable() {
        let meta = MetaConfig {
            instagram_app_secret: SecretString::from(" , ".to_string()),
            meta_graph_url: "http://x".into(),
            meta_login: MetaLogin::Facebook,
            meta_instagram_graph_url: "http://y".into(),
        };
        assert!(meta
            .validate()
            .unwrap_err()
            .to_string()
            .contains("INSTAGRAM_APP_SECRET"));
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(validate_url("X", "http://127.0.0.1:9/graph").is_ok());
        assert!(validate_url("X", "https://graph.facebook.com/v25.0").is_ok());
        for bad in ["", "graph.facebook.com", "ftp://x", "http://", "http:///x"] {
            assert_eq!(validate_url("X", bad).unwrap_err().variable, "X");
        }
    }
}

/// Everything `ingest` reads at start.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ingest",
    about = "Omniops DM's public edge: Meta webhooks in, durable jobs out.",
    version
)]
pub struct IngestConfig {
    /// Address the HTTP server listens on (`:0` picks a free port).
    #[arg(long, env = "INGEST_ADDR", default_value = "0.0.0.0:8080")]
    pub ingest_addr: String,
    /// The verify token set in the Meta dashboard, for the subscription handshake.
    #[arg(long, env = "INSTAGRAM_WEBHOOK_VERIFY_TOKEN", hide_env_values = true)]
    pub instagram_webhook_verify_token: SecretString,
    /// Events being published at once, across all requests; beyond it requests are shed with 503.
    #[arg(long, env = "INGEST_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub ingest_max_in_flight: u32,
    /// How long to wait for the broker to confirm a request's events before answering 503.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 5_000)]
    pub publish_timeout_ms: u64,
    /// Confirm-mode channels in the publishing pool. One was the fastest measured: at ~17,000 events/s
    /// both ingest and RabbitMQ spent ~20 % less CPU per event than with four (BENCHMARKS.md).
    #[arg(long, env = "AMQP_PUBLISH_CHANNELS", default_value_t = 1)]
    pub amqp_publish_channels: usize,
    /// Open connections ingest accepts at once; beyond it new connections are closed at once, so idle or
    /// slow clients cannot exhaust the process.
    #[arg(long, env = "INGEST_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub ingest_max_connections: usize,
    /// Time a client has to send a request's headers (also how long an idle keep-alive connection
    /// stays open): slow-header ("slowloris") clients are cut off.
    #[arg(long, env = "INGEST_HEADER_TIMEOUT_MS", default_value_t = 5_000)]
    pub ingest_header_timeout_ms: u64,
    /// Time limit for a whole webhook request, body and publishing included (a client stalling mid-body
    /// is cut off with 408); the OAuth, admin and dashboard routes get at least 75 s. Must exceed
    /// PUBLISH_TIMEOUT_MS.
    #[arg(long, env = "INGEST_REQUEST_TIMEOUT_MS", default_value_t = 15_000)]
    pub ingest_request_timeout_ms: u64,
    /// Bearer token of the admin API (`Authorization: Bearer …`) and the dashboard login; at least 16
    /// characters.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: SecretString,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conversation: ConversationConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub crypto: CryptoConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub amqp: AmqpConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub meta: MetaConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub telemetry: TelemetryConfig,
}

impl IngestConfig {
    /// Checks the values clap could not; the error names the variable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        require_non_empty(
            "INSTAGRAM_WEBHOOK_VERIFY_TOKEN",
            &self.instagram_webhook_verify_token,
        )?;
        self.ingest_addr
            .parse::<std::net::SocketAddr>()
            .map_err(|e| ConfigError::new("INGEST_ADDR", e.to_string()))?;
        if self.ingest_max_in_flight == 0 {
            return Err(ConfigError::new("INGEST_MAX_IN_FLIGHT", "must be at least 1"));
        }
        if self.ingest_max_connections == 0 {
            return Err(ConfigError::new("INGEST_MAX_CONNECTIONS", "must be at least 1"));
        }
        if self.ingest_header_timeout_ms == 0 {
            return Err(ConfigError::new("INGEST_HEADER_TIMEOUT_MS", "must be at least 1"));
        }
        if self.ingest_request_timeout_ms <= self.publish_timeout_ms {
            return Err(ConfigError::new(
                "INGEST_REQUEST_TIMEOUT_MS",
                "must be longer than PUBLISH_TIMEOUT_MS",
            ));
        }
        if self.admin_token.expose_secret().trim().len() < MIN_ADMIN_TOKEN_LEN {
            return Err(ConfigError::new(
                "ADMIN_TOKEN",
                format!("must be at least {MIN_ADMIN_TOKEN_LEN} characters"),
            ));
        }
        self.connect.validate()?;
        self.crypto.keyring()?;
        self.meta.validate()
    }

    /// The publish confirmation time limit.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}

/// Everything `worker` reads at start.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "worker",
    about = "Omniops DM's queue consumer: Meta events in, AI replies out.",
    version
)]
pub struct WorkerConfig {
    /// Address of the metrics/health server (`:0` picks a free port).
    #[arg(long, env = "WORKER_ADDR", default_value = "0.0.0.0:9090", global = true)]
    pub worker_addr: String,
    /// Jobs one worker process handles at once (also the AMQP prefetch).
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 32, global = true)]
    pub worker_concurrency: u16,
    /// How long to wait for more messages of a burst before answering; merges, never drops.
    #[arg(long, env = "REPLY_DEBOUNCE_MS", default_value_t = 1_500, global = true)]
    pub reply_debounce_ms: u64,
    /// This Meta app's id: a Handover Protocol event naming it passes the thread to us. Without it, any
    /// `pass_thread_control` delivered to us is taken as ours (Meta delivers it to the new owner).
    #[arg(long, env = "INSTAGRAM_APP_ID", global = true)]
    pub instagram_app_id: Option<String>,
    /// Most messages one AI reply is sent as: a longer answer is cut at a sentence (or word) boundary.
    /// A reply of dozens of messages floods the customer and spends the account's Send API budget.
    #[arg(long, env = "MAX_REPLY_CHUNKS", default_value_t = 3, global = true)]
    pub max_reply_chunks: usize,
    /// Most AI replies one conversation gets in a minute; beyond it, what the customer writes waits and is
    /// merged into the next reply (a stranger writing non-stop costs a bounded number of AI calls).
    #[arg(long, env = "AI_REPLIES_PER_MINUTE", default_value_t = 4, global = true)]
    pub ai_replies_per_minute: usize,
    /// Most pending messages of a burst put into one AI call (the newest); older ones are answered by the
    /// same reply and stay in the conversation's history.
    #[arg(long, env = "AI_MAX_BURST_MESSAGES", default_value_t = 10, global = true)]
    pub ai_max_burst_messages: usize,
    /// Messages of history given to the AI with each request.
    #[arg(long, env = "CONTEXT_MESSAGES", default_value_t = 20, global = true)]
    pub context_messages: u32,
    /// Failed attempts (AI or Send API errors) before a job is dead-lettered.
    #[arg(long, env = "JOB_MAX_FAILURES", default_value_t = 6, global = true)]
    pub job_max_failures: u32,
    /// Time limit for one Send API call, in milliseconds.
    #[arg(long, env = "SEND_TIMEOUT_MS", default_value_t = 10_000, global = true)]
    pub send_timeout_ms: u64,
    /// How long an account pauses sending when Meta throttles it without saying for how long.
    #[arg(long, env = "THROTTLE_DEFAULT_SECONDS", default_value_t = 60, global = true)]
    pub throttle_default_seconds: u64,
    /// After SIGTERM, how long in-flight jobs may run before the process exits (the rest are redelivered).
    #[arg(long, env = "WORKER_DRAIN_SECONDS", default_value_t = 25, global = true)]
    pub worker_drain_seconds: u64,
    /// How often each connected account is compared with Meta's Conversations API to recover DMs no
    /// webhook delivered (one worker per account at a time, at most 2 calls/s per account).
    #[arg(
        long,
        env = "RECONCILE_INTERVAL_SECONDS",
        default_value_t = 300,
        global = true
    )]
    pub reconcile_interval_seconds: u64,
    /// How often the token lifecycle job checks every credential (one worker of the fleet runs it).
    #[arg(
        long,
        env = "TOKEN_CHECK_INTERVAL_SECONDS",
        default_value_t = 3_600,
        global = true
    )]
    pub token_check_interval_seconds: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conversation: ConversationConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub amqp: AmqpConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub meta: MetaConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub ai: AiConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub crypto: CryptoConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub telemetry: TelemetryConfig,
}

impl WorkerConfig {
    /// Checks the values clap could not; the error names the variable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.worker_addr
            .parse::<std::net::SocketAddr>()
            .map_err(|e| ConfigError::new("WORKER_ADDR", e.to_string()))?;
        if self.worker_concurrency == 0 {
            return Err(ConfigError::new("WORKER_CONCURRENCY", "must be at least 1"));
        }
        if self.job_max_failures == 0 {
            return Err(ConfigError::new("JOB_MAX_FAILURES", "must be at least 1"));
        }
        if self.max_reply_chunks == 0 {
            return Err(ConfigError::new("MAX_REPLY_CHUNKS", "must be at least 1"));
        }
        if self.ai_replies_per_minute == 0 {
            return Err(ConfigError::new("AI_REPLIES_PER_MINUTE", "must be at least 1"));
        }
        if self.ai_max_burst_messages == 0 {
            return Err(ConfigError::new("AI_MAX_BURST_MESSAGES", "must be at least 1"));
        }
        if self.reconcile_interval_seconds == 0 {
            return Err(ConfigError::new(
                "RECONCILE_INTERVAL_SECONDS",
                "must be at least 1",
            ));
        }
        if self.token_check_interval_seconds == 0 {
            return Err(ConfigError::new(
                "TOKEN_CHECK_INTERVAL_SECONDS",
                "must be at least 1",
            ));
        }
        self.meta.validate()?;
        self.ai.validate()?;
        self.crypto.keyring()?;
        Ok(())
    }

    /// The burst-merging window.
    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.reply_debounce_ms)
    }

    /// How long a conversation lease lasts: long enough for one AI call and a send, short enough that a
    /// crashed holder blocks its conversation only briefly.
    pub fn lease(&self) -> Duration {
        self.ai.timeout()
            + Duration::from_millis(self.send_timeout_ms)
            + self.debounce()
            + Duration::from_secs(10)
    }
}
