//! Sending webhooks the way Meta does: Meta-shaped bodies ([`payload`], [`fixture`]) signed with the app
//! secret in `X-Hub-Signature-256` and posted as `application/json`.
//!
//! Used by the echo feature, the load generator, `sim send-text` and tests of the ingest service.

pub mod fixture;
pub mod payload;

pub use fixture::{Fixture, FixtureError};
pub use payload::{
    api_echo, batch, echo, envelope, handover, messenger_echo, messenger_text_message, text_message, Channel,
    Entry, Event,
};

use omnidm_shared::signature::{sign, SIGNATURE_HEADER};
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use reqwest::StatusCode;
use std::sync::Arc;

/// Posts signed webhook bodies to one endpoint. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
    url: String,
    secret: Arc<[u8]>,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs and panic messages.
        f.debug_struct("WebhookClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How long a pooled connection to the service may idle before the client drops it: below ingest's
/// `INGEST_HEADER_TIMEOUT_MS` (which closes idle keep-alive connections), so a request is never sent on a
/// connection the server is closing at that moment (a reset, which Meta would retry but a test would not).
pub const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1_000);

/// A `reqwest` client for calling the service: keep-alive, but never past [`POOL_IDLE_TIMEOUT`].
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
        .expect("a plain HTTP client builds")
}

impl WebhookClient {
    /// A client with its own connection pool.
    pub fn new(url: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
        Self::with_client(http_client(), url, secret)
    }

    /// A client over an existing `reqwest::Client`, to share its pool and timeouts.
    pub fn with_client(client: reqwest::Client, url: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
        Self {
            client,
            url: url.into(),
            secret: Arc::from(secret.as_ref()),
        }
    }

    /// The endpoint deliveries go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The signed request, for callers that want the whole response or their own timeout.
    pub fn request(&self, body: Vec<u8>) -> reqwest::RequestBuilder {
        let signature = sign(&self.secret, &body);
        self.client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "facebookexternalua")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
    }

    /// Signs and posts `body`; the endpoint's status, or the transport error. The response body is read
    /// to the end so the connection goes back to the pool.
    pub async fn post(&self, body: Vec<u8>) -> reqwest::Result<StatusCode> {
        let response = self.request(body).send().await?;
        let status = response.status();
        response.bytes().await?;
        Ok(status)
    }
}
