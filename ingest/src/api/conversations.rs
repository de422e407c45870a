//! `GET /api/conversations?customerId=`, `GET /api/conversations/{id}/messages`, a person's reply
//! (`POST /api/conversations/{id}/messages`), and pausing or resuming the AI in one conversation
//! (`POST /api/conversations/{id}/pause|resume`). The rules are [`crate::operator`]'s.

use super::error::parse_id;
use super::ApiError;
use crate::app::AppState;
use crate::store::conversations::{self, Conversation, Message};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;

/// Page size bounds.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

/// `?customerId=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    customer_id: Option<String>,
    limit: Option<i64>,
}

/// `?limit=`.
#[derive(Debug, Deserialize)]
pub struct LimitQuery {
    limit: Option<i64>,
}

/// Body of the pause route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// How long; absent: until resumed.
    minutes: Option<i64>,
}

fn limit(value: Option<i64>) -> Result<i64, ApiError> {
    match value.unwrap_or(DEFAULT_LIMIT) {
        n if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1 to {MAX_LIMIT}"),
        )),
    }
}

/// A customer's conversations, most recent first.
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let customer = query
        .customer_id
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("missing_parameter", "customerId is required"))?;
    let customer = parse_id("customerId", customer)?;
    let items: Vec<Conversation> =
        conversations::for_customer(state.db.pool()?, customer, limit(query.limit)?).await?;
    Ok(Json(serde_json::json!({ "conversations": items })))
}

/// One conversation's messages, in Meta-timestamp order.
pub async fn messages(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LimitQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id("id", &id)?;
    let pool = state.db.pool()?;
    if !conversations::exists(pool, id).await? {
        return Err(ApiError::not_found("conversation"));
    }
    let items: Vec<Message> = conversations::messages(pool, id, limit(query.limit)?).await?;
    Ok(Json(serde_json::json!({ "messages": items })))
}

/// Pauses the AI (an operator answers by hand).
pub async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id("id", &id)?;
    // The body is optional: no body pauses until resumed.
    let request: PauseRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PauseRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?
    };
    let until = match request.minutes {
        None => None,
        Some(m) if (1..=525_600).contains(&m) => Some(Utc::now() + chrono::Duration::minutes(m)),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_minutes",
                "minutes must be 1 to 525600",
            ))
        }
    };
    let (now, paused_until) = state.operator.pause(id, until).await?;
    Ok(Json(
        serde_json::json!({ "id": id, "state": now, "aiPausedUntil": paused_until }),
    ))
}

/// Resumes the AI: the next customer message is answered (the thread is taken back from another app).
pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id("id", &id)?;
    let resumed = state.operator.resume(id).await?;
    Ok(Json(serde_json::json!({
        "id": id,
        "state": resumed.state,
        "aiPausedUntil": null,
        "threadTaken": resumed.thread_taken,
    })))
}

/// Body of the operator-reply route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    /// What the person answers.
    text: String,
}

/// A person answers the customer: 202 with the stored message (and its chunks, when it is long), sent
/// by a worker; 409 when Meta's policy forbids sending now.
pub async fn reply(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<ReplyRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id = parse_id("id", &id)?;
    let Json(body) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let stored = state.operator.reply(id, &body.text).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "message": stored.first(), "messages": stored })),
    ))
}
