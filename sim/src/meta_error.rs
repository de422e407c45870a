//! Meta's Graph API error responses, byte-compatible enough that the service's error classifier sees what
//! it would see in production: `{"error":{"message","type","code","error_subcode","is_transient",
//! "fbtrace_id"}}`, usually with HTTP 400, optionally with an `X-Business-Use-Case-Usage` header.
//!
//! Every refusal the sim makes, built-in (bad token, text too long) or injected ([`crate::fault`]), goes
//! through [`MetaError`], so there is one place that decides the shape.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};

/// The header Meta uses to report business-use-case rate-limit usage.
pub const BUSINESS_USAGE_HEADER: &str = "x-business-use-case-usage";

/// One Graph API error, ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaError {
    /// HTTP status; Meta mostly uses 400 and the client must classify by `code`, not by status.
    pub http_status: u16,
    /// Meta's error `type`, almost always `OAuthException`.
    pub kind: &'static str,
    /// Meta's error `code` (190 token, 613 throttle, 100 bad parameter, ...).
    pub code: i64,
    /// `error_subcode`, omitted from the body when `None`.
    pub subcode: Option<i64>,
    /// `is_transient`, omitted from the body when `None` (Meta does not always send it).
    pub is_transient: Option<bool>,
    /// Human text, as Meta words it (`(#100) ...`).
    pub message: String,
    /// `(business object id, minutes)` for an `X-Business-Use-Case-Usage` header, when throttling.
    pub usage: Option<(String, u64)>,
}

impl MetaError {
    /// An `OAuthException` with HTTP 400 and `is_transient: false`, the shape of most Meta refusals.
    pub fn new(code: i64, subcode: Option<i64>, message: impl Into<String>) -> Self {
        Self {
            http_status: 400,
            kind: "OAuthException",
            code,
            subcode,
            is_transient: Some(false),
            message: message.into(),
            usage: None,
        }
    }

    /// 190/463: the token is unknown or has expired.
    pub fn invalid_token() -> Self {
        Self::new(
            190,
            Some(463),
            "Error validating access token: Session has expired or the token is invalid.",
        )
    }

    /// 190/460: the token was valid once but has been revoked (password change, role removed).
    pub fn revoked_token() -> Self {
        Self::new(
            190,
            Some(460),
            "Error validating access token: The session has been invalidated because the user changed \
             their password or Facebook has changed the session for security reasons.",
        )
    }

    /// Code 100: a parameter is missing or invalid.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(100, None, format!("(#100) {}", message.into()))
    }

    /// Code 100, subcode 33: the object does not exist or the path is not supported. Meta answers every
    /// unknown path with a JSON error, never an HTML 404, and the service must cope with that shape.
    pub fn unsupported(method: &str, path: &str) -> Self {
        Self {
            kind: "GraphMethodException",
            ..Self::new(
                100,
                Some(33),
                format!(
                    "Unsupported {} request. Object with ID '{}' does not exist, cannot be loaded due to \
                     missing permissions, or does not support this operation.",
                    method.to_lowercase(),
                    path.trim_start_matches('/')
                ),
            )
        }
    }

    /// 1/1357046: Meta delivered the message but still answered with an error.
    pub fn sent_but_error() -> Self {
        Self {
            http_status: 500,
            is_transient: None,
            ..Self::new(
                1,
                Some(1_357_046),
                "Received Invalid JSON reply. The messages are all sent successfully, but the endpoint \
                 returns an error.",
            )
        }
    }

    /// The JSON body Meta would send.
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": next_fbtrace_id(),
        });
        if let Some(subcode) = self.subcode {
            error["error_subcode"] = json!(subcode);
        }
        if let Some(transient) = self.is_transient {
            error["is_transient"] = json!(transient);
        }
        json!({ "error": error })
    }
}

/// The `X-Business-Use-Case-Usage` value for a throttled business object: every usage figure at or
/// above 100% and the minutes until access returns, which a client should honour before calling again.
pub fn business_usage(object_id: &str, minutes: u64) -> String {
    json!({
        object_id: [{
            "type": "instagram",
            "call_count": 100,
            "total_cputime": 25,
            "total_time": 25,
            "estimated_time_to_regain_access": minutes,
        }]
    })
    .to_string()
}

/// Trace ids are sequential rather than random so that two runs of a test produce the same bodies.
fn next_fbtrace_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("SimTrace{:011}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl IntoResponse for MetaError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http_status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = (status, Json(self.body())).into_response();
        if let Some((object_id, minutes)) = &self.usage {
            if let Ok(value) = HeaderValue::from_str(&business_usage(object_id, *minutes)) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(BUSINESS_USAGE_HEADER), value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_metas_fields_and_omits_a_missing_subcode() {
        let body = MetaError::new(2, None, "boom").body();
        assert_eq!(body["error"]["code"], 2);
        assert_eq!(body["error"]["type"], "OAuthException");
        assert!(body["error"].get("error_subcode").is_none());
        assert!(body["error"]["fbtrace_id"].as_str().is_some());
    }

    #[test]
    fn the_usage_header_names_the_object_and_the_minutes() {
        let usage: serde_json::Value = serde_json::from_str(&business_usage("178", 7)).unwrap();
        assert_eq!(usage["178"][0]["estimated_time_to_regain_access"], 7);
        assert_eq!(usage["178"][0]["call_count"], 100);
    }
}
