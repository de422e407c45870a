//! Meta Graph API errors and what to do about them.
//!
//! Classified by Meta's `code`/`error_subcode`/`is_transient` (META.md §5), never by HTTP status alone:
//! Meta answers most errors with 400, and the same status means "retry", "stop", or "re-authorise"
//! depending on the code.

use serde::Deserialize;
use std::time::Duration;

/// What the caller should do after a failed Graph call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Temporary: retry with backoff.
    Transient,
    /// Rate limited: pause the whole account for `wait` (from Meta's usage header, or a default).
    Throttled {
        /// How long Meta advises to stop calling.
        wait: Duration,
    },
    /// The token is dead (190 and its subcodes, 102): mark the credential `reauth_required`.
    TokenDead,
    /// Outside the 24-hour messaging window (10/2018278, 10/2534022): record as failed, never retry.
    OutsideWindow,
    /// The user cannot receive messages (551, 200/1545041, 10/2018108): record as failed, never retry.
    UserUnreachable,
    /// Meta sent the message but answered with an error (1/1357046): do not resend blindly; the echo
    /// webhook tells whether it went out.
    SentButError,
    /// Another app owns the thread under the Handover Protocol (100/2534037 "not the thread owner",
    /// 2018300 "another app is controlling this thread now"): a change of the conversation's state, not a
    /// failure to retry.
    ThreadElsewhere,
    /// Anything else we cannot fix by retrying (permissions, invalid data…).
    Permanent,
}

impl ErrorClass {
    /// Low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Throttled { .. } => "throttled",
            ErrorClass::TokenDead => "token_dead",
            ErrorClass::OutsideWindow => "outside_window",
            ErrorClass::UserUnreachable => "user_unreachable",
            ErrorClass::SentButError => "sent_but_error",
            ErrorClass::ThreadElsewhere => "thread_elsewhere",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// Meta's error body: `{"error": {...}}`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct GraphError {
    /// Meta's error code.
    #[serde(default)]
    pub code: Option<i64>,
    /// Meta's subcode, which often decides the action.
    #[serde(default)]
    pub error_subcode: Option<i64>,
    /// When present, Meta's own word on whether a retry can help.
    #[serde(default)]
    pub is_transient: Option<bool>,
    /// Human-readable text (no secrets; safe to log).
    #[serde(default)]
    pub message: Option<String>,
    /// Meta's trace id, for support requests.
    #[serde(default)]
    pub fbtrace_id: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: GraphError,
}

/// A sensible wait when Meta throttles without saying for how long.
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(60);

impl GraphError {
    /// Parses an error body; `None` if it is not Meta's error shape (e.g. an HTML 502 page).
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Envelope>(body).ok().map(|e| e.error)
    }

    /// Decides what to do. `usage_header` is `X-Business-Use-Case-Usage`, if Meta sent one.
    /// `default_wait` applies when Meta throttles without saying for how long.
    pub fn classify(
        &self,
        http_status: u16,
        usage_header: Option<&str>,
        default_wait: Duration,
    ) -> ErrorClass {
        let throttled = || ErrorClass::Throttled {
            wait: throttle_wait(usage_header, default_wait),
        };
        match (self.code, self.error_subcode) {
            (Some(1), Some(1_357_046)) => ErrorClass::SentButError,
            (Some(190 | 102), _) => ErrorClass::TokenDead,
            (Some(100), Some(2_534_037)) | (_, Some(2_018_300)) => ErrorClass::ThreadElsewhere,
            (Some(4 | 17 | 32 | 341 | 613 | 80001 | 80002 | 80006), _) => throttled(),
            (Some(10), Some(2_018_278 | 2_534_022)) => ErrorClass::OutsideWindow,
            (Some(10), Some(2_018_108)) | (Some(551), _) | (Some(200), Some(1_545_041)) => {
                ErrorClass::UserUnreachable
            }
            (Some(1 | 2), _) if self.is_transient != Some(false) => ErrorClass::Transient,
            _ if self.is_transient == Some(true) => ErrorClass::Transient,
            _ if http_status == 429 => throttled(),
            (None, _) if http_status >= 500 => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

/// Classifies a failed HTTP exchange whose body may or may not be Meta's error shape.
pub fn classify_response(
    http_status: u16,
    body: &[u8],
    usage_header: Option<&str>,
    default_wait: Duration,
) -> (ErrorClass, GraphError) {
    match GraphError::parse(body) {
        Some(error) => (error.classify(http_status, usage_header, default_wait), error),
        None if http_status == 429 => (
            ErrorClass::Throttled {
                wait: throttle_wait(usage_header, default_wait),
            },
            GraphError::default(),
        ),
        None if http_status >= 500 || http_status == 408 => (ErrorClass::Transient, GraphError::default()),
        None => (ErrorClass::Permanent, GraphError::default()),
    }
}

/// The longest `estimated_time_to_regain_access` (minutes) in `X-Business-Use-Case-Usage`, or
/// `default_wait` when absent or zero.
pub fn throttle_wait(usage_header: Option<&str>, default_wait: Duration) -> Duration {
    let minutes = usage_header
        .and_then(|h| serde_json::from_str::<serde_json::Value>(h).ok())
        .and_then(|v| {
            v.as_object().map(|accounts| {
                accounts
                    .values()
                    .filter_map(|entries| entries.as_array())
                    .flatten()
                    .filter_map(|e| e.get("estimated_time_to_regain_access").and_then(|m| m.as_u64()))
                    .max()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    if minutes == 0 {
        default_wait
    } else {
        Duration::from_secs(minutes * 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(body: &str, status: u16) -> ErrorClass {
        classify_response(status, body.as_bytes(), None, DEFAULT_THROTTLE_WAIT).0
    }

    #[test]
    fn codes_decide_not_http_status() {
        assert_eq!(
            class(r#"{"error":{"code":190,"error_subcode":460}}"#, 400),
            ErrorClass::TokenDead
        );
        assert_eq!(
            class(r#"{"error":{"code":10,"error_subcode":2018278}}"#, 400),
            ErrorClass::OutsideWindow
        );
        assert_eq!(
            class(r#"{"error":{"code":10,"error_subcode":2534022}}"#, 400),
            ErrorClass::OutsideWindow
        );
        assert_eq!(
            class(r#"{"error":{"code":551,"error_subcode":1545041}}"#, 400),
            ErrorClass::UserUnreachable
        );
        assert_eq!(
            class(r#"{"error":{"code":200,"error_subcode":1545041}}"#, 400),
            ErrorClass::UserUnreachable
        );
        assert_eq!(
            class(r#"{"error":{"code":1,"error_subcode":1357046}}"#, 500),
            ErrorClass::SentButError
        );
        assert_eq!(
            class(r#"{"error":{"code":2,"is_transient":true}}"#, 500),
            ErrorClass::Transient
        );
        assert_eq!(
            class(
                r#"{"error":{"code":2,"error_subcode":2018344,"is_transient":false}}"#,
                500
            ),
            ErrorClass::Permanent
        );
        assert_eq!(
            class(r#"{"error":{"code":100,"error_subcode":2534015}}"#, 400),
            ErrorClass::Permanent
        );
        assert_eq!(
            class(r#"{"error":{"code":100,"error_subcode":2534037}}"#, 400),
            ErrorClass::ThreadElsewhere
        );
        assert_eq!(
            class(r#"{"error":{"code":10,"error_subcode":2018300}}"#, 400),
            ErrorClass::ThreadElsewhere
        );
        assert_eq!(class("<html>bad gateway</html>", 502), ErrorClass::Transient);
        assert_eq!(
            class("", 429),
            ErrorClass::Throttled {
                wait: DEFAULT_THROTTLE_WAIT
            }
        );
    }

    #[test]
    fn throttling_waits_as_long_as_meta_advises() {
        let usage = r#"{"178":[{"type":"instagram","call_count":100,"estimated_time_to_regain_access":19}]}"#;
        let (class, _) = classify_response(
            400,
            br#"{"error":{"code":613,"error_subcode":2534040}}"#,
            Some(usage),
            DEFAULT_THROTTLE_WAIT,
        );
        assert_eq!(
            class,
            ErrorClass::Throttled {
                wait: Duration::from_secs(19 * 60)
            }
        );
        assert_eq!(
            throttle_wait(Some("garbage"), DEFAULT_THROTTLE_WAIT),
            DEFAULT_THROTTLE_WAIT
        );
        assert_eq!(
            throttle_wait(None, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }
}
