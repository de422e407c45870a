//! Starting the sim: options, the router that puts every fake on one port, and the server task.
//!
//! One port serves the Graph API (`/graph/{version}/…`), the OAuth dialog (`/dialog/oauth`), the AI
//! (`/ai/v1/…`) and the control API (`/_sim/…`), so a test or the demo starts one thing and points three
//! environment variables at it.

use crate::account::SimAccount;
use crate::handle::SimHandle;
use crate::meta_error::MetaError;
use crate::state::SimState;
use crate::{ai, control, graph};
use anyhow::Context;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Whether and when the sim posts an echo webhook for each message the Send API accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EchoMode {
    /// No echoes (most tests).
    #[default]
    Off,
    /// Post the echo and wait for the webhook's answer before answering the Send API call: reproduces
    /// the race in which the echo of our own reply reaches the service before the reply's `message_id`.
    BeforeResponse,
    /// Answer the Send API call first and post the echo from a separate task, the usual order.
    AfterResponse,
}

/// How to start a sim. `Default` gives a recording sim on a free loopback port with one OAuth account
/// ([`SimAccount::generated`]`(1)`), no AI latency and no echoes.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Where to listen; port 0 picks a free port (tests run in parallel).
    pub addr: SocketAddr,
    /// Keep full records of every call. Off for benchmarks, where only counters are kept.
    pub record: bool,
    /// How long each chat completion takes, to model a real model's latency.
    pub ai_latency: Duration,
    /// A fixed AI answer instead of the quoting one.
    pub ai_reply: Option<String>,
    /// Echo behaviour at start.
    pub echo: EchoMode,
    /// Where echoes are posted (the service's webhook route).
    pub echo_webhook_url: Option<String>,
    /// The Meta app secret echoes are signed with.
    pub app_secret: Option<String>,
    /// Accounts registered at start, besides the OAuth accounts.
    pub accounts: Vec<SimAccount>,
    /// The accounts an OAuth login grants; `None` means one generated account.
    pub oauth_accounts: Option<Vec<SimAccount>>,
    /// The app id `GET /{page}/subscribed_apps` reports.
    pub app_id: String,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            record: true,
            ai_latency: Duration::ZERO,
            ai_reply: None,
            echo: EchoMode::Off,
            echo_webhook_url: None,
            app_secret: None,
            accounts: Vec::new(),
            oauth_accounts: None,
            app_id: "1234567890123456".to_string(),
        }
    }
}

/// The entry point: `Sim::start(options)`.
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// Binds `options.addr`, serves every fake from a background task and returns the handle that
    /// inspects and steers it. The server stops when the last handle clone is dropped (or on
    /// [`SimHandle::shutdown`]); a request held by [`crate::Fault::Hang`] is not waited for.
    pub async fn start(options: SimOptions) -> anyhow::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .with_context(|| format!("Failed to bind the sim to {}", options.addr))?;
        let addr = listener
            .local_addr()
            .context("Failed to read the sim's bound address")?;
        let state = Arc::new(SimState::new(options));
        let app = router(state.clone());
        // Shutdown is graceful so that idle keep-alive connections close too: a test that stops the sim
        // to simulate an outage must see refused calls, not answers over pooled connections. The signal
        // fires on `shutdown()` or when the last handle drops the sender.
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let signal = async move {
                let _closed_or_stopped = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(signal).await {
                tracing::error!(%error, "sim server stopped");
            }
        });
        Ok(SimHandle::new(state, addr, stop))
    }
}

/// Every route of the sim over one state.
pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .merge(graph::routes())
        .route("/dialog/oauth", get(graph::oauth::dialog))
        .merge(ai::routes())
        .merge(control::routes())
        .fallback(fallback)
        .with_state(state)
}

/// Unknown paths: Graph-shaped errors under `/graph` (Meta never sends an HTML 404), JSON elsewhere.
async fn fallback(uri: Uri) -> Response {
    if let Some(rest) = uri.path().strip_prefix("/graph") {
        return MetaError::unsupported("get", rest).into_response();
    }
    let body = serde_json::json!({"error": "not_found", "message": format!("no sim route {}", uri.path())});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
