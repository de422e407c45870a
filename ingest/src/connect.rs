//! "Connect Instagram", start to finish, shared by the admin API and the dashboard: issue a state and
//! the dialog URL; on Meta's redirect, consume the state, exchange the code, subscribe the webhook,
//! store the encrypted token and resume parked work; disconnect.
//!
//! The callback never fails with a 500 page: every outcome is a redirect to the dashboard with
//! `success=instagram_connected` or `error=oauth_denied|invalid_state|oauth_failed` (the reason goes to
//! the log). All Graph calls happen before anything is written, and the write is one transaction, so a
//! failure leaves no half-written credential. The redirect target is always `APP_URL`: nothing in the
//! request can choose it (no open redirect).

use crate::api::ApiError;
use crate::db::Database;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::store::{connections, customers, oauth_states};
use omnidm_shared::crypto::Keyring;
use omnidm_shared::meta::login::{self, Login, LoginError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Everything the flow needs.
#[derive(Clone)]
pub struct Connector {
    /// Ingest's database.
    pub db: Database,
    /// The configured Meta login flavour.
    pub login: Login,
    /// Encrypts tokens.
    pub keyring: Keyring,
    /// Publishes resume jobs after a reconnect.
    pub publisher: Publisher,
    /// The dashboard's base URL (`APP_URL`).
    pub app_url: String,
    /// Metric handles.
    pub metrics: Metrics,
}

/// Meta's redirect to `/api/instagram/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    /// The single-use code (absent when the user cancelled).
    pub code: Option<String>,
    /// Our CSRF state.
    pub state: Option<String>,
    /// `access_denied` when the user cancelled.
    pub error: Option<String>,
    /// Meta's reason (`user_denied`).
    pub error_reason: Option<String>,
}

/// How the callback ended, as the dashboard's query parameter says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// Stored and subscribed.
    Connected,
    /// The user cancelled on Meta's dialog.
    Denied,
    /// Missing, unknown, expired or reused state.
    InvalidState,
    /// Meta or our database failed; the log says why.
    Failed,
}

impl CallbackOutcome {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            CallbackOutcome::Connected => "connected",
            CallbackOutcome::Denied => "denied",
            CallbackOutcome::InvalidState => "invalid_state",
            CallbackOutcome::Failed => "failed",
        }
    }

    /// The dashboard query parameter (CONTRACT.md).
    fn query(self) -> &'static str {
        match self {
            CallbackOutcome::Connected => "success=instagram_connected",
            CallbackOutcome::Denied => "error=oauth_denied",
            CallbackOutcome::InvalidState => "error=invalid_state",
            CallbackOutcome::Failed => "error=oauth_failed",
        }
    }
}

/// What a disconnect did, per account.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Disconnected {
    /// The Instagram account.
    pub account_id: String,
    /// Whether Meta confirmed the webhook subscription was removed (the token is deleted either way).
    pub unsubscribed: bool,
}

impl Connector {
    /// A fresh state for `customer_id` and the Meta dialog URL carrying it.
    pub async fn start(&self, customer_id: Uuid) -> Result<String, ApiError> {
        let pool = self.db.pool()?;
        if customers::get(pool, customer_id).await?.is_none() {
            return Err(ApiError::not_found("customer"));
        }
        let state = oauth_states::issue(pool, customer_id).await?;
        Ok(self.login.authorize_url(&state))
    }

    /// Handles Meta's redirect; returns the dashboard URL to send the browser to.
    pub async fn finish(&self, query: CallbackQuery) -> String {
        let (outcome, customer) = self.callback(query).await;
        self.metrics
            .oauth_callbacks
            .with_label_values(&[outcome.label()])
            .inc();
        let mut url = format!(
            "{}/dashboard/integrations?{}",
            self.app_url.trim_end_matches('/'),
            outcome.query()
        );
        if let Some(customer) = customer {
            url.push_str(&format!("&customerId={customer}"));
        }
        url
    }

    async fn callback(&self, query: CallbackQuery) -> (CallbackOutcome, Option<Uuid>) {
        let Ok(pool) = self.db.pool() else {
            tracing::error!("OAuth callback while the database is unavailable");
            return (CallbackOutcome::Failed, None);
        };
        // The state is consumed even on denial, so a cancelled dialog's state cannot be replayed.
        let customer = match query.state.as_deref().filter(|s| !s.is_empty() && s.len() <= 128) {
            Some(state) => match oauth_states::consume(pool, state).await {
                Ok(customer) => customer,
                Err(error) => {
                    tracing::error!(%error, "cannot consume OAuth state");
                    return (CallbackOutcome::Failed, None);
                }
            },
            None => None,
        };
        if query.error.is_some() {
            tracing::info!(reason = ?query.error_reason, "business owner cancelled the Meta dialog");
            return (CallbackOutcome::Denied, customer);
        }
        let Some(customer) = customer else {
            tracing::warn!("OAuth callback with a missing, unknown, expired or reused state");
            return (CallbackOutcome::InvalidState, None);
        };
        let Some(code) = query.code.filter(|c| !c.is_empty()) else {
            tracing::warn!(%customer, "OAuth callback without a code");
            return (CallbackOutcome::Failed, Some(customer));
        };
        match self.connect(pool, customer, &code).await {
            Ok(()) => (CallbackOutcome::Connected, Some(customer)),
            Err(reason) => {
                tracing::warn!(%customer, %reason, "connecting Instagram failed");
                (CallbackOutcome::Failed, Some(customer))
            }
        }
    }

    async fn connect(&self, pool: &sqlx::PgPool, customer: Uuid, code: &str) -> Result<(), String> {
        let accounts = self.login.complete(code).await.map_err(|e| match e {
            LoginError::NoInstagramAccount => e.to_string(),
            LoginError::Graph { step, error } => format!("Graph call failed at {step}: {error}"),
        })?;
        for account in &accounts {
            login::subscribe(
                self.login.api(),
                account.login,
                account.page_id.as_deref(),
                &account.token,
            )
            .await
            .map_err(|e| format!("webhook subscription failed: {e}"))?;
        }
        let stored = connections::store_login(pool, &self.keyring, customer, &accounts)
            .await
            .map_err(|e| e.to_string())?;
        for (account, row) in accounts.iter().zip(&stored) {
            tracing::info!(
                %customer,
                account_id = %account.account_id,
                username = ?account.username,
                reconnect = row.previous_status.is_some(),
                "Instagram account connected"
            );
            if row.previous_status.is_some() {
                // Replies parked while the token was dead go out now; if this publish fails, the
                // worker's lifecycle sweep finds them anyway.
                if let Err(error) = self.publisher.publish_resume(row.id).await {
                    tracing::warn!(%error, credential_id = %row.id, "cannot queue the resume job; the lifecycle sweep will resume it");
                }
            }
        }
        Ok(())
    }

    /// Disconnects a customer's accounts (or one of them): unsubscribes at Meta where possible, deletes
    /// the token, keeps the history. 404 if nothing was connected.
    pub async fn disconnect(
        &self,
        customer_id: Uuid,
        account_id: Option<&str>,
    ) -> Result<Vec<Disconnected>, ApiError> {
        let pool = self.db.pool()?;
        let targets = connections::with_token(pool, customer_id, account_id).await?;
        if targets.is_empty() {
            return Err(ApiError::not_found("connected Instagram account"));
        }
        let mut done = Vec::with_capacity(targets.len());
        for target in targets {
            let result = match target.token(&self.keyring) {
                Ok(token) => login::unsubscribe(
                    self.login.api(),
                    target.login(),
                    target.page_id.as_deref(),
                    &token,
                )
                .await
                .map_err(|e| e.to_string()),
                Err(e) => Err(format!("token unreadable: {e}")),
            };
            if let Err(error) = &result {
                tracing::warn!(account_id = %target.account_id, %error, "could not unsubscribe at Meta; disconnecting anyway");
            }
            connections::mark_disconnected(
                pool,
                target.id,
                result.is_ok(),
                result.as_ref().err().map(String::as_str),
            )
            .await?;
            tracing::info!(account_id = %target.account_id, "Instagram account disconnected");
            done.push(Disconnected {
                account_id: target.account_id,
                unsubscribed: result.is_ok(),
            });
        }
        Ok(done)
    }
}
