//! The control API under `/_sim/`: the [`crate::SimHandle`] operations as JSON over HTTP, for a sim
//! running in another process (the demo, a chaos test, a person with curl).
//!
//! | route | body / answer |
//! |---|---|
//! | `GET /_sim/sent`, `/_sim/rejected`, `/_sim/ai-requests`, `/_sim/graph-requests`, `/_sim/echoes` | the records, as JSON arrays |
//! | `GET /_sim/counters` | [`crate::SimCounters`] |
//! | `GET /_sim/accounts`, `POST /_sim/accounts` | [`crate::SimAccount`] list / one account to add |
//! | `POST /_sim/oauth` | `{"accounts"?: [SimAccount], "deny"?: bool}` |
//! | `POST /_sim/revoke` | `{"token"}` |
//! | `GET /_sim/subscriptions/{page_id}` | the subscribed fields, or `null` |
//! | `POST /_sim/faults` | `{"target":"send"\|"ai"\|"graph", "fault": <Fault>, "count"?: n}`; without `count` the fault stands until cleared |
//! | `DELETE /_sim/faults` | clears every fault |
//! | `POST /_sim/ai` | `{"latency_ms"?: n, "reply"?: string \| null, "handoff"?: string \| null}` |
//! | `GET /_sim/thread-control`, `/_sim/sender-actions` | Handover Protocol calls / sender actions, as JSON arrays |
//! | `POST /_sim/thread-owner` | `{"ig_account_id", "recipient_id", "app_id"?: string \| null}` (absent or `null`: the primary app) |
//! | `POST /_sim/messenger-users` | `{"psid"}` |
//! | `POST /_sim/echo` | `{"mode":"off"\|"before_response"\|"after_response", "webhook_url"?, "app_secret"?}` |
//! | `POST /_sim/reset` | back to the state right after start |

use crate::account::SimAccount;
use crate::fault::{Fault, FaultTarget};
use crate::server::EchoMode;
use crate::state::{lock, SimState};
use crate::threads::thread_account;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};
use std::sync::Arc;
use std::time::Duration;

type Sim = State<Arc<SimState>>;

/// The control routes.
pub(crate) fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route(
            "/_sim/sent",
            get(|State(s): Sim| async move { Json(s.records.sent_messages()) }),
        )
        .route(
            "/_sim/rejected",
            get(|State(s): Sim| async move { Json(s.records.rejected_sends()) }),
        )
        .route(
            "/_sim/ai-requests",
            get(|State(s): Sim| async move { Json(s.records.ai_requests()) }),
        )
        .route(
            "/_sim/graph-requests",
            get(|State(s): Sim| async move { Json(s.records.graph_requests()) }),
        )
        .route(
            "/_sim/echoes",
            get(|State(s): Sim| async move { Json(s.records.echo_deliveries()) }),
        )
        .route(
            "/_sim/counters",
            get(|State(s): Sim| async move { Json(s.records.counters()) }),
        )
        .route(
            "/_sim/thread-control",
            get(|State(s): Sim| async move { Json(s.records.thread_control_calls()) }),
        )
        .route(
            "/_sim/sender-actions",
            get(|State(s): Sim| async move { Json(s.records.sender_actions()) }),
        )
        .route("/_sim/thread-owner", post(thread_owner))
        .route("/_sim/messenger-users", post(messenger_user))
        .route("/_sim/accounts", get(accounts).post(add_account))
        .route("/_sim/oauth", post(oauth))
        .route("/_sim/revoke", post(revoke))
        .route("/_sim/subscriptions/{page_id}", get(subscriptions))
        .route("/_sim/faults", post(add_fault).delete(clear_faults))
        .route("/_sim/ai", post(ai))
        .route("/_sim/echo", post(echo))
        .route("/_sim/reset", post(reset))
}

async fn accounts(State(s): Sim) -> Json<Vec<SimAccount>> {
    Json(lock(&s.registry).accounts())
}

async fn add_account(State(s): Sim, Json(account): Json<SimAccount>) -> Response {
    lock(&s.registry).add_account(account.clone());
    (StatusCode::CREATED, Json(account)).into_response()
}

#[derive(Debug, Deserialize)]
struct OAuthRequest {
    accounts: Option<Vec<SimAccount>>,
    deny: Option<bool>,
}

async fn oauth(State(s): Sim, Json(request): Json<OAuthRequest>) -> StatusCode {
    let mut registry = lock(&s.registry);
    if let Some(accounts) = request.accounts {
        registry.set_oauth_accounts(accounts);
    }
    if let Some(deny) = request.deny {
        registry.oauth_deny = deny;
    }
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
struct RevokeRequest {
    token: String,
}

async fn revoke(State(s): Sim, Json(request): Json<RevokeRequest>) -> StatusCode {
    lock(&s.registry).revoke(&request.token);
    StatusCode::NO_CONTENT
}

async fn subscriptions(State(s): Sim, Path(page_id): Path<String>) -> Json<Option<Vec<String>>> {
    Json(lock(&s.registry).subscriptions(&page_id))
}

#[derive(Debug, Deserialize)]
struct FaultRequest {
    target: FaultTarget,
    fault: Fault,
    count: Option<u32>,
}

async fn add_fault(State(s): Sim, Json(request): Json<FaultRequest>) -> StatusCode {
    let mut faults = lock(&s.faults);
    match request.count {
        Some(count) => faults.push(request.target, request.fault, count),
        None => faults.set(request.target, Some(request.fault)),
    }
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(s): Sim) -> StatusCode {
    lock(&s.faults).clear();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
struct AiRequestBody {
    latency_ms: Option<u64>,
    /// Absent: unchanged; `null`: back to the quoting answer; a string: that answer.
    #[serde(default, deserialize_with = "present")]
    reply: Option<Option<String>>,
    /// Absent: unchanged; `null`: hand off only when asked; a string: always hand off with that reason.
    #[serde(default, deserialize_with = "present")]
    handoff: Option<Option<String>>,
}

/// Distinguishes a present `null` (`Some(None)`) from an absent field (`None`, via `default`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn ai(State(s): Sim, Json(request): Json<AiRequestBody>) -> StatusCode {
    let mut settings = lock(&s.settings);
    if let Some(ms) = request.latency_ms {
        settings.ai_latency = Duration::from_millis(ms);
    }
    if let Some(reply) = request.reply {
        settings.ai_reply = reply;
    }
    if let Some(handoff) = request.handoff {
        settings.ai_handoff = handoff;
    }
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
struct ThreadOwnerRequest {
    ig_account_id: String,
    recipient_id: String,
    app_id: Option<String>,
}

async fn thread_owner(State(s): Sim, Json(request): Json<ThreadOwnerRequest>) -> StatusCode {
    let account = thread_account(&s, &request.ig_account_id);
    lock(&s.threads).set_owner(&account, &request.recipient_id, request.app_id, s.app_id());
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
struct MessengerUserRequest {
    psid: String,
}

async fn messenger_user(State(s): Sim, Json(request): Json<MessengerUserRequest>) -> StatusCode {
    lock(&s.threads).register_messenger_user(&request.psid);
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
struct EchoRequest {
    mode: EchoMode,
    webhook_url: Option<String>,
    app_secret: Option<String>,
}

async fn echo(State(s): Sim, Json(request): Json<EchoRequest>) -> StatusCode {
    let mut settings = lock(&s.settings);
    settings.echo = request.mode;
    if request.webhook_url.is_some() {
        settings.echo_url = request.webhook_url;
    }
    if request.app_secret.is_some() {
        settings.echo_secret = request.app_secret;
    }
    StatusCode::NO_CONTENT
}

async fn reset(State(s): Sim) -> StatusCode {
    s.reset();
    StatusCode::NO_CONTENT
}
