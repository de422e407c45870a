//! Admin authentication: `Authorization: Bearer $ADMIN_TOKEN`, compared in constant time.
//!
//! The token is not kept: only an HMAC of it under a random per-process key, and a presented token is
//! compared by its HMAC with `verify_slice` (constant time), so neither the comparison's timing nor a
//! memory dump of the handle reveals it. The same secret also keys the dashboard's session cookies.

use super::ApiError;
use crate::app::AppState;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Checks admin tokens and signs dashboard sessions.
#[derive(Clone)]
pub struct AdminAuth {
    key: [u8; 32],
    expected: Vec<u8>,
    session_key: Vec<u8>,
}

impl AdminAuth {
    /// From `ADMIN_TOKEN`.
    pub fn new(admin_token: &SecretString) -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let token = admin_token.expose_secret().trim().as_bytes();
        // Sessions must verify on every ingest replica and across restarts, and die when the token is
        // rotated: so their key is derived from the token itself, not random.
        let session_key = mac(token, b"omnidm dashboard session v1");
        Self {
            expected: mac(&key, token),
            key,
            session_key,
        }
    }

    /// Whether `presented` is the admin token (constant time).
    pub fn check(&self, presented: &str) -> bool {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        m.update(presented.trim().as_bytes());
        m.verify_slice(&self.expected).is_ok()
    }

    /// HMAC of `message` under the session key (dashboard cookies and CSRF tokens).
    pub fn sign(&self, message: &str) -> String {
        hex::encode(mac(&self.session_key, message.as_bytes()))
    }

    /// Whether `signature` is [`AdminAuth::sign`] of `message` (constant time).
    pub fn verify(&self, message: &str, signature: &str) -> bool {
        let Ok(bytes) = hex::decode(signature) else {
            return false;
        };
        let mut m = HmacSha256::new_from_slice(&self.session_key).expect("HMAC accepts any key length");
        m.update(message.as_bytes());
        m.verify_slice(&bytes).is_ok()
    }
}

fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(message);
    m.finalize().into_bytes().to_vec()
}

/// Middleware: 401 unless the request carries the admin bearer token; counts every admin request.
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| state.admin.check(token));
    let response = if authorized {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    };
    let class = match response.status().as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    state.metrics.admin_requests.with_label_values(&[class]).inc();
    response
}
