//! Instagram Login (Business Login for Instagram, no Facebook Page), META.md §6.1: the authorize page
//! (redirects with `code` and Meta's `#_` suffix), the code exchange on `api.instagram.com` (its own
//! error shape, `{data: [...]}` answer), and the `graph.instagram.com` calls: `access_token`
//! (`ig_exchange_token`), `refresh_access_token` (`ig_refresh_token`), `me?fields=user_id,username`,
//! `me/subscribed_apps` and `me/messages`.
//!
//! Instagram tokens act for one account like a page token does, so sends and subscriptions reuse the
//! Facebook handlers; subscriptions are kept under the account's page id (`SimHandle::subscriptions`).

use super::oauth::LONG_LIVED_EXPIRES_IN;
use super::{pages, select_fields, send, GraphCall};
use crate::meta_error::MetaError;
use crate::state::{lock, SimState, TokenOwner};
use axum::extract::{Form, Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// The authorize page's query.
#[derive(Debug, Deserialize)]
pub(crate) struct AuthorizeQuery {
    redirect_uri: Option<String>,
    state: Option<String>,
}

/// `GET /instagram/oauth/authorize`: a 302 back with `code` (and `#_`), or the denial parameters.
pub(crate) async fn authorize(
    State(sim): State<Arc<SimState>>,
    Query(query): Query<AuthorizeQuery>,
) -> Response {
    let Some(redirect_uri) = query.redirect_uri else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is required").into_response();
    };
    let Ok(mut location) = reqwest::Url::parse(&redirect_uri) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is not an absolute URL").into_response();
    };
    let state_param = query.state.unwrap_or_default();
    let denied = {
        let mut registry = lock(&sim.registry);
        let mut pairs = location.query_pairs_mut();
        let denied = registry.oauth_deny;
        if denied {
            pairs
                .append_pair("error", "access_denied")
                .append_pair("error_reason", "user_denied")
                .append_pair("error_description", "The user denied your request");
        } else {
            pairs.append_pair("code", &registry.issue_code(&redirect_uri));
        }
        pairs.append_pair("state", &state_param);
        denied
    };
    if !denied {
        // "The #_ appended to the end of the redirect URI is not part of the code itself."
        location.set_fragment(Some("_"));
    }
    (StatusCode::FOUND, [(header::LOCATION, location.to_string())]).into_response()
}

/// `POST /instagram/oauth/access_token` (form): code → short-lived Instagram token.
pub(crate) async fn code_exchange(
    State(sim): State<Arc<SimState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    for field in ["client_id", "client_secret", "grant_type", "redirect_uri", "code"] {
        if form.get(field).is_none_or(|v| v.is_empty()) {
            return instagram_error(format!("Missing required field {field}"));
        }
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return instagram_error("Unsupported grant_type".into());
    }
    let exchanged = lock(&sim.registry).exchange_instagram_code(
        form.get("code").map_or("", String::as_str),
        form.get("redirect_uri").map(String::as_str),
    );
    match exchanged {
        Ok((token, account)) => Json(json!({
            "data": [{
                "access_token": token,
                "user_id": account.ig_account_id,
                "permissions": "instagram_business_basic,instagram_business_manage_messages",
            }]
        }))
        .into_response(),
        Err(message) => instagram_error(message),
    }
}

/// `api.instagram.com`'s own error shape (not Graph's).
fn instagram_error(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error_type": "OAuthException", "code": 400, "error_message": message })),
    )
        .into_response()
}

/// The `graph.instagram.com` calls, after the shared parsing, recording and fault handling.
pub(crate) async fn route(state: &Arc<SimState>, call: &GraphCall) -> Result<Response, MetaError> {
    let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    match (&call.method, segments.as_slice()) {
        (&Method::GET, ["access_token"]) => {
            if call.param("grant_type") != Some("ig_exchange_token") || call.param("client_secret").is_none()
            {
                return Err(MetaError::invalid_parameter(
                    "grant_type=ig_exchange_token and client_secret are required",
                ));
            }
            exchange(state, call)
        }
        (&Method::GET, ["refresh_access_token"]) => {
            if call.param("grant_type") != Some("ig_refresh_token") {
                return Err(MetaError::invalid_parameter(
                    "grant_type=ig_refresh_token is required",
                ));
            }
            exchange(state, call)
        }
        (&Method::GET, ["me"]) => {
            let account = owner(state, call)?;
            let me = json!({
                "id": format!("ig-scoped-{}", account.ig_account_id),
                "user_id": account.ig_account_id,
                "username": account.username,
            });
            Ok(Json(select_fields(me, call.param("fields"))).into_response())
        }
        (_, [id, "subscribed_apps"]) => {
            let account = owner(state, call)?;
            if *id != "me" && *id != account.ig_account_id {
                return Err(MetaError::unsupported(call.method.as_str(), &call.path()));
            }
            pages::subscribed_apps(state, call, &account.page_id)
        }
        (&Method::POST, [_, "messages"]) => send::send(state, call).await,
        (&Method::GET, [id, "conversations"]) => super::conversations::list(state, call, id),
        _ => Err(MetaError::unsupported(call.method.as_str(), &call.path())),
    }
}

/// `ig_exchange_token` and `ig_refresh_token`: a new long-lived token for the token's account; the old
/// one keeps working until it expires, as at Meta.
fn exchange(state: &SimState, call: &GraphCall) -> Result<Response, MetaError> {
    let account = owner(state, call)?;
    let token = lock(&state.registry).mint_instagram_token("LONG", &account);
    Ok(Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": LONG_LIVED_EXPIRES_IN,
    }))
    .into_response())
}

fn owner(state: &SimState, call: &GraphCall) -> Result<crate::SimAccount, MetaError> {
    match call.owner(state)? {
        TokenOwner::Page(account) => Ok(account),
        TokenOwner::User(_) => Err(MetaError::invalid_token()),
    }
}
