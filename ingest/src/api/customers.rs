//! `POST /api/customers`: create a tenant.

use super::ApiError;
use crate::app::AppState;
use crate::store::customers;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

/// Longest accepted name and system prompt: generous, but bounded (the prompt goes to the AI each time).
const MAX_NAME: usize = 200;
const MAX_PROMPT: usize = 20_000;

/// Body of `POST /api/customers`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewCustomer {
    name: String,
    #[serde(default)]
    system_prompt: Option<String>,
}

/// 201 `{"id"}`.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<NewCustomer>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("name must be 1 to {MAX_NAME} characters"),
        ));
    }
    let prompt = body.system_prompt.unwrap_or_default();
    if prompt.chars().count() > MAX_PROMPT {
        return Err(ApiError::bad_request(
            "invalid_system_prompt",
            format!("systemPrompt must be at most {MAX_PROMPT} characters"),
        ));
    }
    let id = customers::create(state.db.pool()?, name, &prompt).await?;
    tracing::info!(customer_id = %id, "customer created");
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}
