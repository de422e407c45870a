//! Fault injection: what the next call (or every call) to a target should suffer.
//!
//! Faults are what make the sim worth having: the service's retry, throttle, re-auth and reconciliation
//! logic can only be tested against a Meta that fails on demand. A test queues faults for a
//! [`FaultTarget`] ([`crate::SimHandle::push_faults`], FIFO, each used once) or sets a standing one
//! ([`crate::SimHandle::set_fault`]); queued faults are used before the standing fault. Another process does
//! the same through `POST /_sim/faults` with the serde form documented on [`Fault`].

use crate::meta_error::MetaError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// How long a [`Fault::Hang`] holds a request: far beyond any client timeout, short enough that a
/// forgotten hang does not keep a sim process busy forever.
pub const HANG_FOR: Duration = Duration::from_secs(3600);

/// Which group of endpoints a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// The Send API, `POST /{id}/messages`.
    Send,
    /// The chat-completions endpoint.
    Ai,
    /// Every other Graph API call (OAuth exchange, pages, subscriptions, profiles).
    Graph,
}

/// One injected failure.
///
/// JSON (externally tagged, snake case): `{"graph_error":{"http_status":400,"code":613,"subcode":2534040,
/// "message":"...","usage_minutes":5}}`, `{"http_status":503}`, `{"delay_ms":250}`, `"hang"`,
/// `"sent_but_error"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// A Meta error body (see [`MetaError`]) instead of the answer.
    GraphError {
        /// HTTP status of the error response.
        http_status: u16,
        /// Meta's `code`.
        code: i64,
        /// Meta's `error_subcode`.
        #[serde(default)]
        subcode: Option<i64>,
        /// Meta's `is_transient`, omitted when `None`.
        #[serde(default)]
        is_transient: Option<bool>,
        /// Meta's `message`.
        #[serde(default = "default_message")]
        message: String,
        /// When set, an `X-Business-Use-Case-Usage` header says access returns in this many minutes.
        #[serde(default)]
        usage_minutes: Option<u64>,
    },
    /// A bare HTTP status with an HTML body, as a load balancer in front of Meta would send.
    HttpStatus(u16),
    /// Wait this long, then answer normally (slow upstream; timeouts shorter than this fire).
    #[serde(rename = "delay_ms", with = "millis")]
    Delay(Duration),
    /// Never answer (well, after [`HANG_FOR`]): the client's timeout must fire.
    Hang,
    /// Do the work (the message is delivered, its echo sent) but answer Meta's 1/1357046 error, the case
    /// where retrying would send the message twice.
    SentButError,
    /// An OpenAI-shaped error (`{"error":{"message","type","param","code"}}`), for the AI endpoint:
    /// e.g. 400 `context_length_exceeded`, 401 `invalid_api_key`.
    OpenaiError {
        /// HTTP status of the error response.
        http_status: u16,
        /// OpenAI's `code`.
        code: String,
    },
}

fn default_message() -> String {
    "An injected error occurred.".to_string()
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl Fault {
    /// A Meta error with HTTP 400 and no usage header.
    pub fn graph_error(code: i64, subcode: Option<i64>, message: impl Into<String>) -> Self {
        Fault::GraphError {
            http_status: 400,
            code,
            subcode,
            is_transient: Some(false),
            message: message.into(),
            usage_minutes: None,
        }
    }

    /// 613/2534040 with a usage header saying access returns in `minutes`: Send API rate limit.
    pub fn throttle(minutes: u64) -> Self {
        Fault::GraphError {
            http_status: 400,
            code: 613,
            subcode: Some(2_534_040),
            is_transient: Some(true),
            message: "(#613) Calls to this api have exceeded the rate limit.".to_string(),
            usage_minutes: Some(minutes),
        }
    }

    /// 190/463: the token has expired; the channel needs re-authorisation.
    pub fn token_expired() -> Self {
        Self::graph_error(190, Some(463), MetaError::invalid_token().message)
    }

    /// 10/2018278: the 24-hour messaging window has closed.
    pub fn outside_window() -> Self {
        Self::graph_error(
            10,
            Some(2_018_278),
            "(#10) This message is sent outside of allowed window.",
        )
    }

    /// 551/1545041: the recipient cannot be messaged.
    pub fn user_unavailable() -> Self {
        Self::graph_error(
            551,
            Some(1_545_041),
            "(#551) This person isn't available right now.",
        )
    }

    /// Code 2 with `is_transient: true` and HTTP 500: a retryable hiccup.
    pub fn transient() -> Self {
        Fault::GraphError {
            http_status: 500,
            code: 2,
            subcode: None,
            is_transient: Some(true),
            message: "An unexpected error has occurred. Please retry your request later.".to_string(),
            usage_minutes: None,
        }
    }
}

/// The pending faults per target. Lives behind a mutex in the sim state; every operation is O(1).
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    queued: HashMap<FaultTarget, VecDeque<(Fault, u32)>>,
    standing: HashMap<FaultTarget, Fault>,
}

impl FaultBook {
    pub(crate) fn push(&mut self, target: FaultTarget, fault: Fault, count: u32) {
        if count > 0 {
            self.queued.entry(target).or_default().push_back((fault, count));
        }
    }

    pub(crate) fn set(&mut self, target: FaultTarget, fault: Option<Fault>) {
        match fault {
            Some(fault) => self.standing.insert(target, fault),
            None => self.standing.remove(&target),
        };
    }

    pub(crate) fn clear(&mut self) {
        self.queued.clear();
        self.standing.clear();
    }

    /// The fault the next call to `target` suffers, consuming one use of a queued fault.
    pub(crate) fn take(&mut self, target: FaultTarget) -> Option<Fault> {
        if let Some(queue) = self.queued.get_mut(&target) {
            if let Some((fault, remaining)) = queue.front_mut() {
                let fault = fault.clone();
                *remaining -= 1;
                if *remaining == 0 {
                    queue.pop_front();
                }
                return Some(fault);
            }
        }
        self.standing.get(&target).cloned()
    }
}

/// What a handler does after its fault (if any) has been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proceed {
    /// Answer normally.
    Normally,
    /// Do the work, then answer [`MetaError::sent_but_error`].
    ThenFail,
}

/// Applies the part of `fault` that comes before the handler's work: sleeps for delays and hangs, or
/// returns the response that replaces the answer. `usage_object` names the business object a throttle
/// header reports on; it is only computed when needed.
pub(crate) async fn apply(
    fault: Option<Fault>,
    usage_object: impl FnOnce() -> String,
) -> Result<Proceed, Response> {
    match fault {
        None => Ok(Proceed::Normally),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            Ok(Proceed::Normally)
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(HANG_FOR).await;
            Ok(Proceed::Normally)
        }
        Some(Fault::SentButError) => Ok(Proceed::ThenFail),
        Some(Fault::HttpStatus(status)) => Err(html_status(status)),
        Some(Fault::OpenaiError { http_status, code }) => {
            let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::BAD_REQUEST);
            let body = serde_json::json!({"error": {
                "message": format!("Injected error: {code}"),
                "type": "invalid_request_error",
                "param": null,
                "code": code,
            }});
            Err((status, axum::Json(body)).into_response())
        }
        Some(Fault::GraphError {
            http_status,
            code,
            subcode,
            is_transient,
            message,
            usage_minutes,
        }) => {
            let error = MetaError {
                http_status,
                kind: "OAuthException",
                code,
                subcode,
                is_transient,
                message,
                usage: usage_minutes.map(|m| (usage_object(), m)),
            };
            Err(error.into_response())
        }
    }
}

fn html_status(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<html><head><title>{} {reason}</title></head><body><h1>{reason}</h1></body></html>",
        status.as_u16()
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_faults_are_used_in_order_then_the_standing_fault() {
        let mut book = FaultBook::default();
        book.set(FaultTarget::Ai, Some(Fault::Hang));
        book.push(FaultTarget::Ai, Fault::HttpStatus(502), 2);
        book.push(FaultTarget::Ai, Fault::transient(), 1);
        assert_eq!(book.take(FaultTarget::Ai), Some(Fault::HttpStatus(502)));
        assert_eq!(book.take(FaultTarget::Ai), Some(Fault::HttpStatus(502)));
        assert_eq!(book.take(FaultTarget::Ai), Some(Fault::transient()));
        assert_eq!(book.take(FaultTarget::Ai), Some(Fault::Hang));
        assert_eq!(book.take(FaultTarget::Send), None);
        book.clear();
        assert_eq!(book.take(FaultTarget::Ai), None);
    }

    #[test]
    fn faults_have_a_readable_tagged_json_form() {
        let json = serde_json::to_value([
            Fault::Delay(Duration::from_millis(250)),
            Fault::HttpStatus(503),
            Fault::Hang,
        ])
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"delay_ms":250},{"http_status":503},"hang"])
        );
        let throttle: Fault =
            serde_json::from_str(r#"{"graph_error":{"http_status":400,"code":613,"usage_minutes":3}}"#)
                .unwrap();
        assert!(matches!(
            throttle,
            Fault::GraphError {
                code: 613,
                usage_minutes: Some(3),
                ..
            }
        ));
    }
}
