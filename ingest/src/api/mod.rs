//! The admin API (`/api/*` except the webhook and the OAuth callback): bearer `ADMIN_TOKEN`, JSON in and
//! out, errors as `{"error": "<code>", "message": "<human text>"}` (CONTRACT.md). Documented in
//! `docs/api.md`.

pub mod auth;
pub mod connect;
pub mod conversations;
pub mod customers;
mod error;

pub use error::ApiError;

use crate::app::AppState;
use axum::routing::{delete, get, post};
use axum::Router;

/// The admin routes, behind the bearer-token check. The OAuth callback is not here: Meta's redirect
/// carries no token, the single-use `state` authenticates it.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/customers", post(customers::create))
        .route(
            "/api/customers/{id}",
            get(customers::get).patch(customers::update),
        )
        .route("/api/instagram/auth/url", post(connect::auth_url))
        .route("/api/instagram/status", get(connect::status))
        .route("/api/instagram/connection", delete(connect::disconnect))
        .route("/api/conversations", get(conversations::list))
        .route(
            "/api/conversations/{id}/messages",
            get(conversations::messages).post(conversations::reply),
        )
        .route("/api/conversations/{id}/pause", post(conversations::pause))
        .route("/api/conversations/{id}/resume", post(conversations::resume))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
        .with_state(state)
}
