//! `GET/POST /api/webhooks/instagram`: Meta's subscription handshake and event delivery.
//!
//! POST answers 200 only once every event of the batch is confirmed by the broker; 403 for a bad or
//! missing signature, 413 over 1 MiB, 503 with `Retry-After` when the events cannot be queued (Meta then
//! retries), and 200 for a signed body that is not a Meta envelope (kept in the rejected queue: retrying
//! it could never help).

use crate::app::AppState;
use crate::publish::Published;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use omnidm_shared::signature::{SignatureError, SIGNATURE_HEADER};
use secrecy::ExposeSecret;
use serde::Deserialize;
use std::time::Instant;

/// Meta's documented webhook body limit is far below this; anything larger is not from Meta.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Seconds Meta is asked to wait before retrying a batch we could not queue.
const RETRY_AFTER_SECONDS: &str = "5";

/// Query parameters of the subscription handshake.
#[derive(Debug, Deserialize)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Answers Meta's handshake with the challenge, as plain text, only when the verify token matches.
pub async fn verify_subscription(State(state): State<AppState>, Query(query): Query<Handshake>) -> Response {
    let expected = state.verify_token.expose_secret().as_bytes();
    let token_ok = query
        .verify_token
        .as_deref()
        .is_some_and(|t| constant_time_eq(t.as_bytes(), expected));
    let (Some("subscribe"), true, Some(challenge)) = (query.mode.as_deref(), token_ok, query.challenge)
    else {
        tracing::warn!("webhook verification refused");
        return StatusCode::FORBIDDEN.into_response();
    };
    // The challenge is documented as an integer; reflecting anything else would be an XSS vector.
    if challenge.is_empty() || challenge.len() > 256 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    tracing::info!("webhook subscription verified");
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        challenge,
    )
        .into_response()
}

/// Receives a batch of events.
///
/// Takes the whole request rather than a `HeaderMap` extractor, which would clone every header of
/// every webhook.
#[tracing::instrument(name = "webhook", skip_all, fields(request_id = tracing::field::Empty, events = tracing::field::Empty))]
pub async fn receive(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    tracing::Span::current().record("request_id", request_id.as_str());
    let (outcome, mut response) = handle(&state, headers, body).await;
    state.metrics.requests.with_label_values(&[outcome]).inc();
    state
        .metrics
        .request_duration
        .with_label_values(&[outcome])
        .observe(started.elapsed().as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> (&'static str, Response) {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_length.is_some_and(|n| n > MAX_BODY_BYTES) {
        return ("oversize", StatusCode::PAYLOAD_TOO_LARGE.into_response());
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) if is_length_limit(&error) => {
            return ("oversize", StatusCode::PAYLOAD_TOO_LARGE.into_response())
        }
        Err(_) => return ("malformed", StatusCode::BAD_REQUEST.into_response()),
    };
    let signature = headers.get(SIGNATURE_HEADER).map(HeaderValue::as_bytes);
    let verified = match state.verifier.verify(signature, bytes) {
        Ok(verified) => verified,
        Err(error) => {
            let reason = match error {
                SignatureError::Missing => "missing",
                SignatureError::Mismatch => "mismatch",
            };
            tracing::warn!(reason, "webhook signature refused");
            return ("bad_signature", StatusCode::FORBIDDEN.into_response());
        }
    };
    // Bound the work in flight: a saturated broker must not turn into unbounded memory here.
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return ("overloaded", unavailable());
    };
    let received_at_ms = chrono_now_ms();
    let publish = state.publisher.publish(verified, received_at_ms);
    let started = Instant::now();
    match publish.await {
        Ok(Published::Events(count)) => {
            state
                .metrics
                .publish_confirm
                .observe(started.elapsed().as_secs_f64());
            tracing::Span::current().record("events", count);
            tracing::debug!(count, "events queued");
            ("accepted", StatusCode::OK.into_response())
        }
        Ok(Published::Rejected) => {
            state.metrics.rejected_bodies.inc();
            ("malformed", StatusCode::OK.into_response())
        }
        Err(error) => {
            state
                .metrics
                .publish_failures
                .with_label_values(&[error.label()])
                .inc();
            tracing::warn!(%error, "cannot queue webhook events; answering 503 so Meta retries");
            ("unavailable", unavailable())
        }
    }
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECONDS)],
    )
        .into_response()
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.to_string().contains("length limit exceeded") {
            return true;
        }
        source = e.source();
    }
    false
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"token2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
