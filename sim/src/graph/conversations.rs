//! The Conversations API (`GET /{page-id}/conversations?platform=instagram`, or `/me/conversations` with
//! an Instagram Login token): every thread of the account with its recent messages, customers' DMs (from
//! [`crate::SimHandle::add_inbound_message`]) and the account's own sends, newest first, as Meta shapes
//! them. This is what the service's reconciler reads to find DMs no webhook announced.

use super::GraphCall;
use crate::meta_error::MetaError;
use crate::state::{lock, SimState, TokenOwner};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Meta's timestamp format in Graph answers (`2026-11-24T00:00:00+0000`).
fn graph_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%z")
        .to_string()
}

/// `GET /{page-id | me}/conversations`.
pub(crate) fn list(state: &SimState, call: &GraphCall, id: &str) -> Result<Response, MetaError> {
    let account = match call.owner(state)? {
        TokenOwner::Page(account) => account,
        TokenOwner::User(_) => {
            return Err(MetaError::new(
                210,
                None,
                "(#210) A page access token is required to request this resource.",
            ))
        }
    };
    if id != "me" && id != account.page_id && id != account.ig_account_id {
        return Err(MetaError::unsupported("GET", &call.path()));
    }
    if call.param("platform").is_some_and(|p| p != "instagram") {
        return Ok(Json(json!({ "data": [] })).into_response());
    }
    // (user, [(timestamp, message json)])
    let mut threads: BTreeMap<String, Vec<(i64, Value)>> = BTreeMap::new();
    let inbox = lock(&state.registry)
        .inbox
        .get(&account.ig_account_id)
        .cloned()
        .unwrap_or_default();
    for m in inbox {
        threads.entry(m.user_id.clone()).or_default().push((
            m.timestamp_ms,
            json!({
                "id": m.mid,
                "created_time": graph_time(m.timestamp_ms),
                "from": { "id": m.user_id, "username": format!("user_{}", m.user_id) },
                "to": { "data": [{ "id": account.ig_account_id, "username": account.username }] },
                "message": m.text,
            }),
        ));
    }
    for sent in state
        .records
        .sent_messages()
        .into_iter()
        .filter(|m| m.ig_account_id == account.ig_account_id)
    {
        let ms = sent.received_at.timestamp_millis();
        threads.entry(sent.recipient_id.clone()).or_default().push((
            ms,
            json!({
                "id": sent.message_id,
                "created_time": graph_time(ms),
                "from": { "id": account.ig_account_id, "username": account.username },
                "to": { "data": [{ "id": sent.recipient_id }] },
                "message": sent.text,
            }),
        ));
    }
    let limit: usize = call
        .param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let mut data: Vec<(i64, Value)> = threads
        .into_iter()
        .map(|(user, mut messages)| {
            messages.sort_by_key(|m| std::cmp::Reverse(m.0));
            let updated = messages.first().map_or(0, |m| m.0);
            messages.truncate(20);
            (
                updated,
                json!({
                    "id": format!("t_{}_{user}", account.ig_account_id),
                    "updated_time": graph_time(updated),
                    "messages": { "data": messages.into_iter().map(|m| m.1).collect::<Vec<_>>() },
                }),
            )
        })
        .collect();
    data.sort_by_key(|d| std::cmp::Reverse(d.0));
    data.truncate(limit);
    Ok(Json(json!({ "data": data.into_iter().map(|d| d.1).collect::<Vec<_>>() })).into_response())
}
