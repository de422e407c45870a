//! Meta's Send API (`POST /me/messages` with the Page token), with errors classified by Meta's codes.
//!
//! The token goes in the `Authorization` header, never in the URL, so no error message or log line can
//! carry it; `appsecret_proof` is added so a leaked token alone is not enough where the app requires it.

use hmac::{Hmac, Mac};
use omnidm_shared::meta::graph_error::{classify_response, ErrorClass};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use std::time::Duration;

/// A failed send, classified.
#[derive(Debug, thiserror::Error)]
#[error("send failed ({}): {detail}", class.label())]
pub struct SendError {
    /// What to do about it.
    pub class: ErrorClass,
    /// Meta's code/subcode/message, safe to log.
    pub detail: String,
}

/// Client for the Graph API base configured in `META_GRAPH_URL`.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: String,
    app_secret: SecretString,
    default_throttle: Duration,
}

#[derive(Deserialize)]
struct Sent {
    message_id: String,
}

impl GraphClient {
    /// Builds the client.
    pub fn new(base: &str, app_secret: SecretString, timeout: Duration, default_throttle: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a TLS-capable HTTP client builds");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            app_secret,
            default_throttle,
        }
    }

    /// Sends one text message; returns Meta's message id.
    #[tracing::instrument(name = "send", skip_all)]
    pub async fn send_text(
        &self,
        token: &SecretString,
        recipient: &str,
        text: &str,
    ) -> Result<String, SendError> {
        let body = serde_json::json!({
            "recipient": {"id": recipient},
            "messaging_type": "RESPONSE",
            "message": {"text": text},
        });
        let response = self
            .http
            .post(format!("{}/me/messages", self.base))
            .query(&[("appsecret_proof", self.proof(token))])
            .bearer_auth(token.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|e| SendError {
                class: ErrorClass::Transient,
                detail: crate::ai::describe(&e),
            })?;
        let status = response.status().as_u16();
        let usage = response
            .headers()
            .get("x-business-use-case-usage")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| SendError {
            class: ErrorClass::Transient,
            detail: crate::ai::describe(&e),
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice::<Sent>(&bytes)
                .map(|s| s.message_id)
                .map_err(|_| SendError {
                    class: ErrorClass::SentButError,
                    detail: "2xx without a message_id".into(),
                });
        }
        let (class, error) = classify_response(status, &bytes, usage.as_deref(), self.default_throttle);
        let detail = format!(
            "HTTP {status} code {:?} subcode {:?}: {}",
            error.code,
            error.error_subcode,
            error.message.as_deref().unwrap_or("")
        );
        Err(SendError { class, detail })
    }

    fn proof(&self, token: &SecretString) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.app_secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(token.expose_secret().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}
