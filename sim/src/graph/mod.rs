//! The Graph API fake, served under `/graph/{version}/…` for any version string.
//!
//! One catch-all route parses the call once (`GraphCall`), records it, applies the target's fault and
//! dispatches on `(method, path segments)`. A catch-all rather than one axum route per endpoint because
//! Meta's paths overlap (`/me/accounts` vs `/{page-id}/subscribed_apps` vs `/{igsid}`) and because every
//! unknown path must still answer Meta's JSON error, never an HTML 404.

pub mod conversations;
pub mod handover;
pub mod instagram;
pub mod oauth;
pub mod pages;
pub mod send;

use crate::fault::{self, FaultTarget, Proceed};
use crate::meta_error::MetaError;
use crate::records::GraphRequest;
use crate::state::{lock, SimState, TokenOwner};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The Graph routes.
pub(crate) fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/graph/{version}/{*rest}", any(dispatch))
        .route("/ig-graph/{*rest}", any(dispatch))
        .route(
            "/instagram/oauth/authorize",
            axum::routing::get(instagram::authorize),
        )
        .route(
            "/instagram/oauth/access_token",
            axum::routing::post(instagram::code_exchange),
        )
}

/// Which Graph host a call was made to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    /// `graph.facebook.com` (`/graph/...`).
    Facebook,
    /// `graph.instagram.com` (`/ig-graph/...`), Instagram Login.
    Instagram,
}

/// A parsed Graph API call, as every endpoint handler receives it.
#[derive(Debug)]
pub(crate) struct GraphCall {
    pub(crate) method: Method,
    /// Path segments after the version (`["me", "messages"]`).
    pub(crate) segments: Vec<String>,
    /// Query parameters, plus form-encoded body parameters for POST/DELETE (Meta accepts both).
    pub(crate) params: HashMap<String, String>,
    /// The access token, from `access_token` or `Authorization: Bearer`.
    pub(crate) token: Option<String>,
    pub(crate) body: Bytes,
}

impl GraphCall {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub(crate) fn path(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }

    /// Resolves the call's token against the registry.
    pub(crate) fn owner(&self, state: &SimState) -> Result<TokenOwner, MetaError> {
        lock(&state.registry).resolve(self.token.as_deref())
    }
}

async fn dispatch(
    State(state): State<Arc<SimState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((host, version, segments)) = split_path(uri.path()) else {
        return MetaError::unsupported(method.as_str(), uri.path()).into_response();
    };
    let mut params = Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let form_body = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/x-www-form-urlencoded"));
    if form_body {
        params.extend(form_params(&body));
    }
    let token = params
        .get("access_token")
        .cloned()
        .or_else(|| bearer(&headers))
        .filter(|t| !t.is_empty());
    let call = GraphCall {
        method,
        segments,
        params,
        token,
        body,
    };
    state.records.graph(|| GraphRequest {
        method: call.method.to_string(),
        version,
        path: match host {
            Host::Facebook => call.path(),
            Host::Instagram => format!("ig:{}", call.path()),
        },
        query: call
            .params
            .iter()
            .filter(|(k, _)| *k != "access_token")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        has_token: call.token.is_some(),
        at: chrono::Utc::now(),
    });

    let target = if is_send(&call) {
        FaultTarget::Send
    } else {
        FaultTarget::Graph
    };
    let proceed = match fault::apply(state.take_fault(target), || usage_object(&state, &call)).await {
        Ok(proceed) => proceed,
        Err(response) => return response,
    };
    let response = match host {
        Host::Facebook => route(&state, &call).await,
        Host::Instagram => instagram::route(&state, &call).await,
    }
    .unwrap_or_else(IntoResponse::into_response);
    if proceed == Proceed::ThenFail && response.status().is_success() {
        return MetaError::sent_but_error().into_response();
    }
    response
}

async fn route(state: &Arc<SimState>, call: &GraphCall) -> Result<Response, MetaError> {
    let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    match (&call.method, segments.as_slice()) {
        (&Method::POST, [_, "messages"]) => send::send(state, call).await,
        (
            &Method::POST,
            [_, path @ ("pass_thread_control" | "take_thread_control" | "request_thread_control")],
        ) => handover::thread_control(state, call, path),
        (&Method::GET, ["oauth", "access_token"]) => oauth::access_token(state, call),
        (&Method::GET, ["me", "accounts"]) => pages::me_accounts(state, call),
        (&Method::GET, [id, "conversations"]) => conversations::list(state, call, id),
        (_, [page_id, "subscribed_apps"]) => pages::subscribed_apps(state, call, page_id),
        (&Method::GET, [id]) => pages::node(state, call, id),
        _ => Err(MetaError::unsupported(call.method.as_str(), &call.path())),
    }
}

fn is_send(call: &GraphCall) -> bool {
    call.method == Method::POST && call.segments.len() == 2 && call.segments[1] == "messages"
}

/// `/graph/v25.0/me/messages` → `(Facebook, "v25.0", ["me", "messages"])`. Instagram's host has an
/// optional version (its token endpoints are documented unversioned): `/ig-graph/access_token` →
/// `(Instagram, "", ["access_token"])`.
fn split_path(path: &str) -> Option<(Host, String, Vec<String>)> {
    if let Some(rest) = path.strip_prefix("/ig-graph/") {
        let mut parts: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let versioned = parts
            .first()
            .is_some_and(|p| p.starts_with('v') && p[1..].chars().all(|c| c.is_ascii_digit() || c == '.'));
        let version = if versioned { parts.remove(0) } else { String::new() };
        return Some((Host::Instagram, version, parts));
    }
    let mut parts = path.strip_prefix("/graph/")?.split('/').filter(|s| !s.is_empty());
    let version = parts.next()?.to_string();
    Some((Host::Facebook, version, parts.map(str::to_string).collect()))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("OAuth "))?;
    Some(token.trim().to_string())
}

/// Parses an `application/x-www-form-urlencoded` body with the same decoder as the query string.
fn form_params(body: &[u8]) -> HashMap<String, String> {
    let Ok(text) = std::str::from_utf8(body) else {
        return HashMap::new();
    };
    format!("/?{text}")
        .parse::<Uri>()
        .ok()
        .and_then(|uri| Query::<HashMap<String, String>>::try_from_uri(&uri).ok())
        .map(|q| q.0)
        .unwrap_or_default()
}

/// The business object a throttle header reports on: the token's (first) Instagram account, else the
/// object in the path, else `0`.
fn usage_object(state: &SimState, call: &GraphCall) -> String {
    match call.owner(state) {
        Ok(TokenOwner::Page(account)) => account.ig_account_id,
        Ok(TokenOwner::User(accounts)) if !accounts.is_empty() => accounts[0].ig_account_id.clone(),
        _ => call
            .segments
            .first()
            .filter(|s| *s != "me")
            .cloned()
            .unwrap_or_else(|| "0".to_string()),
    }
}

/// The top-level names in a Graph `fields` parameter: `id,name,instagram_business_account{id,username}`
/// → `["id", "name", "instagram_business_account"]`.
pub(crate) fn top_level_fields(fields: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in fields.char_indices() {
        match c {
            '{' => {
                if depth == 0 {
                    names.push(&fields[start..i]);
                }
                depth += 1;
            }
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                if !fields[start..i].ends_with('}') {
                    names.push(&fields[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth == 0 && !fields[start..].ends_with('}') {
        names.push(&fields[start..]);
    }
    names
        .into_iter()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect()
}

/// Keeps only the requested top-level fields of `object` (always keeping `id`), as Graph does. Without a
/// `fields` parameter the object is returned whole.
pub(crate) fn select_fields(mut object: serde_json::Value, fields: Option<&str>) -> serde_json::Value {
    if let (Some(fields), Some(map)) = (fields, object.as_object_mut()) {
        let wanted = top_level_fields(fields);
        map.retain(|k, _| k == "id" || wanted.contains(&k.as_str()));
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_fields_skip_nested_selections() {
        assert_eq!(
            top_level_fields("id,name,access_token,instagram_business_account{id,username,name},x"),
            vec!["id", "name", "access_token", "instagram_business_account", "x"]
        );
        assert_eq!(
            top_level_fields("instagram_business_account{id}"),
            vec!["instagram_business_account"]
        );
    }

    #[test]
    fn paths_split_into_version_and_segments() {
        assert_eq!(
            split_path("/ig-graph/refresh_access_token"),
            Some((
                Host::Instagram,
                String::new(),
                vec!["refresh_access_token".to_string()]
            ))
        );
        assert_eq!(
            split_path("/ig-graph/v25.0/me"),
            Some((Host::Instagram, "v25.0".to_string(), vec!["me".to_string()]))
        );
        assert_eq!(
            split_path("/graph/v99.1/123/subscribed_apps"),
            Some((
                Host::Facebook,
                "v99.1".to_string(),
                vec!["123".to_string(), "subscribed_apps".to_string()]
            ))
        );
        assert_eq!(split_path("/other"), None);
    }
}
