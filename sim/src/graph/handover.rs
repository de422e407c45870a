//! The Handover Protocol: `POST /me/pass_thread_control`, `/me/take_thread_control` and
//! `/me/request_thread_control` (or `/{page-id}/…`, as the Send API accepts), each answering
//! `{"success":true}`.
//!
//! A page token is required, as for the Send API (210 otherwise). The sim keeps each thread's owner
//! (`threads.rs`): `pass` gives the thread to `target_app_id`, `take` gives it back to the primary
//! app (the service under test), `request` only asks and changes nothing. Every accepted call is recorded
//! as a [`ThreadControlCall`]. While another app owns a thread the Send API refuses messages into it.

use super::send::page_account;
use super::GraphCall;
use crate::meta_error::MetaError;
use crate::records::ThreadControlCall;
use crate::state::{lock, SimState};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
struct HandoverRequest {
    recipient: Option<Recipient>,
    /// Meta's examples send it as a number; a string is accepted too.
    target_app_id: Option<Value>,
    metadata: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Recipient {
    id: Option<String>,
}

/// Serves `{path}` = `pass_thread_control`, `take_thread_control` or `request_thread_control`.
pub(crate) fn thread_control(state: &SimState, call: &GraphCall, path: &str) -> Result<Response, MetaError> {
    let account = page_account(state, call)?;
    let request: HandoverRequest = serde_json::from_slice(&call.body)
        .map_err(|e| MetaError::invalid_parameter(format!("Invalid JSON for postbody: {e}")))?;
    let recipient_id = request
        .recipient
        .and_then(|r| r.id)
        .ok_or_else(|| MetaError::invalid_parameter("The parameter recipient is required"))?;
    let target_app_id = match request.target_app_id {
        Some(Value::String(id)) if !id.is_empty() => Some(id),
        Some(Value::Number(id)) => Some(id.to_string()),
        _ => None,
    };
    let action = path.trim_end_matches("_thread_control");
    {
        let mut threads = lock(&state.threads);
        match action {
            "pass" => {
                let target = target_app_id
                    .clone()
                    .ok_or_else(|| MetaError::invalid_parameter("The parameter target_app_id is required"))?;
                threads.set_owner(
                    &account.ig_account_id,
                    &recipient_id,
                    Some(target),
                    state.app_id(),
                );
            }
            "take" => threads.set_owner(&account.ig_account_id, &recipient_id, None, state.app_id()),
            _ => {}
        }
    }
    state.records.thread_control(ThreadControlCall {
        action: action.to_string(),
        page_id: account.page_id,
        ig_account_id: account.ig_account_id,
        recipient_id,
        target_app_id: target_app_id.filter(|_| action == "pass"),
        metadata: request.metadata,
        at: chrono::Utc::now(),
    });
    Ok(Json(json!({ "success": true })).into_response())
}
