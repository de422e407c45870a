//! The token lifecycle: one worker of the fleet at a time (a Postgres advisory lock) checks every
//! connected account on a schedule, so a token dies loudly days ahead instead of silently at the first
//! reply that fails.
//!
//! Per account: an Instagram Login token within [`REFRESH_BEFORE`] of its expiry (and at least a day old,
//! Meta's condition) is refreshed; a token that expired, or that Meta answers 190 for, makes the account
//! `reauth_required`; one within [`EXPIRING_WITHIN`] of its expiry that could not be refreshed is
//! `expiring`. Page tokens (Facebook Login) do not expire, so they are validated with a cheap read.
//! Each run also resumes accounts that still hold parked replies (a resume job that was lost) and
//! updates the `worker_credentials{status}` gauge (every worker, so any scrape shows it).

use crate::context::Context;
use crate::resume;
use crate::store::credentials::{self, Credential};
use crate::store::locks;
use chrono::{Duration as Span, Utc};
use omnidm_shared::config::MetaLogin;
use omnidm_shared::meta::graph_error::ErrorClass;
use omnidm_shared::meta::login;
use omnidm_shared::states::CredentialStatus;
use std::time::Duration;
use tokio::sync::watch;

/// Advisory-lock key of the lifecycle job ("omnidm-lifecycle" folded into an i64).
const LOCK_KEY: i64 = 0x6f6d_6e69_6c69_6665;

/// Refresh Instagram tokens this long before they expire (chatwoot uses the same 10 days).
pub const REFRESH_BEFORE: Span = Span::days(10);

/// Within this of its expiry an account is shown as `expiring` (so an alert fires days ahead).
pub const EXPIRING_WITHIN: Span = Span::days(7);

/// Meta refuses to refresh a token younger than this.
const MIN_TOKEN_AGE: Span = Span::hours(24);

/// Runs the lifecycle every `interval` until `stop` turns true.
pub async fn run(ctx: Context, interval: Duration, mut stop: watch::Receiver<bool>) {
    // The first run is one interval after start, not at once: a fleet restarting together does not
    // hit Meta with a burst of checks, and the job's lock makes one worker do it anyway.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(error) = run_once(&ctx).await {
            tracing::warn!(%error, "token lifecycle run failed; next run retries");
        }
    }
}

/// One run: the gauge always, the checks only if this worker holds the fleet-wide lock.
pub async fn run_once(ctx: &Context) -> sqlx::Result<bool> {
    update_gauge(ctx).await?;
    let Some(lock) = locks::try_lock(&ctx.pool, LOCK_KEY).await? else {
        return Ok(false);
    };
    let result = check_all(ctx).await;
    lock.unlock().await;
    result?;
    update_gauge(ctx).await?;
    Ok(true)
}

async fn check_all(ctx: &Context) -> sqlx::Result<()> {
    for credential in credentials::all_connected(&ctx.pool).await? {
        if credential.status == CredentialStatus::ReauthRequired {
            continue; // Only a reconnect brings it back.
        }
        check(ctx, &credential).await?;
    }
    for credential_id in credentials::with_parked_work(&ctx.pool).await? {
        let outcome = resume::process(ctx, credential_id).await;
        tracing::debug!(%credential_id, ?outcome, "lifecycle sweep resumed parked replies");
    }
    Ok(())
}

#[tracing::instrument(name = "token_check", skip_all, fields(account_id = %credential.account_id))]
async fn check(ctx: &Context, credential: &Credential) -> sqlx::Result<()> {
    let token = match credential.access_token(&ctx.keyring) {
        Ok(token) => token,
        Err(error) => {
            // A key missing from the keyring is an operator error, not the account's: say so loudly.
            tracing::error!(%error, "cannot decrypt the access token; is a key missing from ENCRYPTION_KEYS_PREVIOUS?");
            return Ok(());
        }
    };
    let now = Utc::now();
    if credential.token_expires_at.is_some_and(|at| at <= now) {
        return reauth(ctx, credential, "token_expired").await;
    }
    let api = ctx.graph.api();
    let due = credential
        .token_expires_at
        .is_some_and(|at| at - now <= REFRESH_BEFORE)
        && credential
            .token_refreshed_at
            .is_none_or(|at| now - at >= MIN_TOKEN_AGE);
    if credential.login() == MetaLogin::Instagram && due {
        match login::refresh_instagram(api, &token).await {
            Ok((fresh, expires_at)) => {
                if credentials::store_refreshed(&ctx.pool, &ctx.keyring, credential, &fresh, expires_at)
                    .await
                    .map_err(store_to_sqlx)?
                {
                    ctx.metrics.token_refresh.with_label_values(&["refreshed"]).inc();
                    credentials::record_event(
                        &ctx.pool,
                        credential.id,
                        "token_refreshed",
                        serde_json::json!({ "expires_at": expires_at }),
                    )
                    .await?;
                    tracing::info!(?expires_at, "token refreshed");
                }
                return Ok(());
            }
            Err(error) if error.class == ErrorClass::TokenDead => {
                ctx.metrics
                    .token_refresh
                    .with_label_values(&["reauth_required"])
                    .inc();
                return reauth(ctx, credential, &error.detail).await;
            }
            Err(error) => {
                ctx.metrics.token_refresh.with_label_values(&["failed"]).inc();
                tracing::warn!(%error, "token refresh failed; retried next run");
            }
        }
    } else {
        match login::validate(api, credential.login(), credential.page_id.as_deref(), &token).await {
            Err(error) if error.class == ErrorClass::TokenDead => {
                return reauth(ctx, credential, &error.detail).await;
            }
            Err(error) => tracing::warn!(%error, "token check failed; retried next run"),
            Ok(()) => {}
        }
    }
    let status = if credential
        .token_expires_at
        .is_some_and(|at| at - now <= EXPIRING_WITHIN)
    {
        CredentialStatus::Expiring
    } else {
        CredentialStatus::Active
    };
    credentials::set_checked_status(&ctx.pool, credential.id, status, None).await
}

async fn reauth(ctx: &Context, credential: &Credential, reason: &str) -> sqlx::Result<()> {
    tracing::warn!(reason, "account needs to be reconnected");
    credentials::mark_reauth_required(&ctx.pool, credential.id, reason).await
}

async fn update_gauge(ctx: &Context) -> sqlx::Result<()> {
    // Every status, so the gauge shows zeros rather than gaps.
    let counts = credentials::count_by_status(&ctx.pool).await?;
    for status in CredentialStatus::ALL {
        let count = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        ctx.metrics
            .credentials
            .with_label_values(&[status.as_str()])
            .set(count);
    }
    Ok(())
}

fn store_to_sqlx(error: credentials::StoreError) -> sqlx::Error {
    match error {
        credentials::StoreError::Database(e) => e,
        credentials::StoreError::Crypto(e) => sqlx::Error::Protocol(format!("token encryption: {e}")),
    }
}
