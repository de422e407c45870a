//! `GET /api/conversations?customerId=`, `GET /api/conversations/{id}/messages`, and pausing or
//! resuming the AI in one conversation (`POST /api/conversations/{id}/pause|resume`).

use super::error::parse_id;
use super::ApiError;
use crate::app::AppState;
use crate::store::conversations::{self, Conversation, Message};
use axum::extract::{Path, Query, State};
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;

/// Page size bounds.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

/// A pause without a duration lasts until resumed (in practice: a century).
const INDEFINITE_PAUSE_DAYS: i64 = 36_500;

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
    let span = match request.minutes {
        None => chrono::Duration::days(INDEFINITE_PAUSE_DAYS),
        Some(m) if (1..=525_600).contains(&m) => chrono::Duration::minutes(m),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_minutes",
                "minutes must be 1 to 525600",
            ))
        }
    };
    set(&state, id, Some(Utc::now() + span)).await
}

/// Resumes the AI: the next customer message is answered.
pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id("id", &id)?;
    set(&state, id, None).await
}

async fn set(
    state: &AppState,
    id: uuid::Uuid,
    until: Option<chrono::DateTime<Utc>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match conversations::set_ai_pause(state.db.pool()?, id, until).await? {
        Some(value) => Ok(Json(serde_json::json!({ "id": id, "aiPausedUntil": value }))),
        None => Err(ApiError::not_found("conversation")),
    }
}
