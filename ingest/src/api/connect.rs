//! `POST /api/instagram/auth/url`, `GET /api/instagram/callback`, `GET /api/instagram/status`,
//! `DELETE /api/instagram/connection`.

use super::error::parse_id;
use super::ApiError;
use crate::app::AppState;
use crate::connect::CallbackQuery;
use crate::store::connections::{self, AccountEvent, Connection};
use axum::extract::{Query, State};
use axum::response::Redirect;
use axum::Json;
use omnidm_shared::states::CredentialStatus;
use serde::{Deserialize, Serialize};

/// Body of `POST /api/instagram/auth/url`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthUrlRequest {
    customer_id: String,
}

/// `?customerId=` (and optionally `accountId=`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerQuery {
    customer_id: Option<String>,
    account_id: Option<String>,
}

impl CustomerQuery {
    fn customer(&self) -> Result<uuid::Uuid, ApiError> {
        let value = self
            .customer_id
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("missing_parameter", "customerId is required"))?;
        parse_id("customerId", value)
    }
}

/// A fresh dialog URL for the customer.
pub async fn auth_url(
    State(state): State<AppState>,
    body: Result<Json<AuthUrlRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let customer = parse_id("customerId", &body.customer_id)?;
    let url = state.connector.start(customer).await?;
    Ok(Json(serde_json::json!({ "authUrl": url })))
}

/// Meta's redirect: always a 302 to the dashboard.
pub async fn callback(
    State(state): State<AppState>,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Redirect {
    // A query that does not even parse is treated as one without a state: `invalid_state`.
    let query = query.map(|q| q.0).unwrap_or_default();
    Redirect::to(&state.connector.finish(query).await)
}

/// A customer's connection status.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    customer_id: uuid::Uuid,
    /// Whether at least one account is answering DMs.
    connected: bool,
    /// The primary account's handle (the first connected one), for the seed's single-account view.
    username: Option<String>,
    /// The primary account's status, or `disconnected` when there is none.
    status: CredentialStatus,
    accounts: Vec<AccountStatus>,
}

/// One account in [`Status`], with its recent audit trail.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    #[serde(flatten)]
    connection: Connection,
    connected: bool,
    recent_events: Vec<AccountEvent>,
}

/// `GET /api/instagram/status?customerId=`.
pub async fn status(
    State(state): State<AppState>,
    Query(query): Query<CustomerQuery>,
) -> Result<Json<Status>, ApiError> {
    let customer = query.customer()?;
    let pool = state.db.pool()?;
    if crate::store::customers::get(pool, customer).await?.is_none() {
        return Err(ApiError::not_found("customer"));
    }
    let connections = connections::for_customer(pool, customer).await?;
    let mut events = connections::recent_events(pool, customer, 10).await?;
    let primary = connections.iter().find(|c| c.is_connected()).or_else(|| {
        connections
            .iter()
            .find(|c| c.status != CredentialStatus::Disconnected)
    });
    let status = Status {
        customer_id: customer,
        connected: connections.iter().any(Connection::is_connected),
        username: primary.and_then(|c| c.username.clone()),
        status: primary.map_or(CredentialStatus::Disconnected, |c| c.status),
        accounts: connections
            .into_iter()
            .map(|connection| {
                let (mine, rest) = std::mem::take(&mut events)
                    .into_iter()
                    .partition(|e| e.credential_id == connection.id);
                events = rest;
                AccountStatus {
                    connected: connection.is_connected(),
                    connection,
                    recent_events: mine,
                }
            })
            .collect(),
    };
    Ok(Json(status))
}

/// `DELETE /api/instagram/connection?customerId=[&accountId=]`.
pub async fn disconnect(
    State(state): State<AppState>,
    Query(query): Query<CustomerQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let customer = query.customer()?;
    let done = state
        .connector
        .disconnect(customer, query.account_id.as_deref())
        .await?;
    Ok(Json(serde_json::json!({ "disconnected": done })))
}
