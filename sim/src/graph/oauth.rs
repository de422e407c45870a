//! Facebook Login, server-side flow: the dialog that auto-approves (or refuses) and the token endpoint
//! that exchanges its single-use code for a user token, then for a long-lived one.
//!
//! The tokens minted here list the OAuth accounts ([`crate::SimHandle::set_oauth_accounts`]) in
//! `/me/accounts`, so a test can walk the whole "Connect Instagram" flow without a browser.

use super::GraphCall;
use crate::meta_error::MetaError;
use crate::state::{lock, SimState};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Seconds a long-lived user token lasts, the figure Meta returns (about 60 days).
pub const LONG_LIVED_EXPIRES_IN: u64 = 5_183_944;

/// Seconds a short-lived user token lasts.
pub const SHORT_LIVED_EXPIRES_IN: u64 = 3_600;

/// The dialog's query; only `redirect_uri` is needed, the rest is echoed or ignored like Meta would.
#[derive(Debug, Deserialize)]
pub(crate) struct DialogQuery {
    /// Where to send the browser back.
    redirect_uri: Option<String>,
    /// The CSRF state, returned untouched.
    state: Option<String>,
}

/// `GET /dialog/oauth`: a 302 back to `redirect_uri` with `code` and `state`, or with
/// `error=access_denied` when denial is switched on.
pub(crate) async fn dialog(State(sim): State<Arc<SimState>>, Query(query): Query<DialogQuery>) -> Response {
    let Some(redirect_uri) = query.redirect_uri else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is required").into_response();
    };
    let Ok(mut location) = reqwest::Url::parse(&redirect_uri) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is not an absolute URL").into_response();
    };
    let state_param = query.state.unwrap_or_default();
    {
        let mut registry = lock(&sim.registry);
        let mut pairs = location.query_pairs_mut();
        if registry.oauth_deny {
            pairs
                .append_pair("error", "access_denied")
                .append_pair("error_code", "200")
                .append_pair("error_reason", "user_denied")
                .append_pair("error_description", "Permissions error");
        } else {
            pairs.append_pair("code", &registry.issue_code(&redirect_uri));
        }
        pairs.append_pair("state", &state_param);
    }
    (StatusCode::FOUND, [(header::LOCATION, location.to_string())]).into_response()
}

/// `GET /oauth/access_token`: `code` → short-lived user token; `grant_type=fb_exchange_token` →
/// long-lived user token.
pub(crate) fn access_token(state: &SimState, call: &GraphCall) -> Result<Response, MetaError> {
    for name in ["client_id", "client_secret"] {
        if call.param(name).is_none() {
            return Err(MetaError::new(101, None, format!("Missing {name} parameter.")));
        }
    }
    let mut registry = lock(&state.registry);
    let (token, expires_in) = if call.param("grant_type") == Some("fb_exchange_token") {
        let short = call
            .param("fb_exchange_token")
            .ok_or_else(|| MetaError::invalid_parameter("Missing fb_exchange_token parameter"))?;
        (registry.exchange_long_lived(short)?, LONG_LIVED_EXPIRES_IN)
    } else {
        let code = call
            .param("code")
            .ok_or_else(|| MetaError::invalid_parameter("Missing code parameter"))?;
        (
            registry.exchange_code(code, call.param("redirect_uri"))?,
            SHORT_LIVED_EXPIRES_IN,
        )
    };
    Ok(
        Json(json!({ "access_token": token, "token_type": "bearer", "expires_in": expires_in }))
            .into_response(),
    )
}
