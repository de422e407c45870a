//! Delivers notifications to businesses (`POST <notifyUrl>`, signed with HMAC-SHA256) from the outbox
//! [`crate::store::notifications`]: every worker polls it, claims what is due (rows another worker holds
//! are skipped), and retries failures with exponential backoff and jitter. Off the reply path: a
//! business's slow or broken server delays nothing but its own notifications.

use crate::context::Context;
use crate::store::notifications::{self, Due};
use chrono::Utc;
use omnidm_shared::crypto::notify_secret_associated_data;
use omnidm_shared::signature::sign;
use rand::Rng;
use secrecy::ExposeSecret;
use std::time::Duration;
use tokio::sync::watch;

/// How often the outbox is polled when it was empty.
const POLL: Duration = Duration::from_millis(500);

/// Notifications one worker attempts at once.
const BATCH: i64 = 16;

/// How long one attempt may take; also how long a claimed row is held from other workers.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts before giving up: with the backoff below, about a day of retries.
pub const MAX_ATTEMPTS: i32 = 18;

/// Polls the outbox until `stop` says so.
pub async fn run(ctx: Context, mut stop: watch::Receiver<bool>) {
    let http = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a TLS-capable HTTP client builds");
    loop {
        let busy = match notifications::claim_due(&ctx.pool, BATCH, ATTEMPT_TIMEOUT * 3).await {
            Ok(due) => {
                let any = !due.is_empty();
                futures_util::future::join_all(due.into_iter().map(|d| deliver(&ctx, &http, d))).await;
                any
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the notification outbox");
                false
            }
        };
        if busy {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One attempt at one notification, and its bookkeeping.
async fn deliver(ctx: &Context, http: &reqwest::Client, due: Due) {
    let outcome = attempt(ctx, http, &due).await;
    let recorded = match outcome {
        Ok(()) => {
            ctx.metrics.notifications.with_label_values(&["delivered"]).inc();
            notifications::delivered(&ctx.pool, due.id).await
        }
        Err(error) if due.attempts >= MAX_ATTEMPTS || due.notify_url.is_none() => {
            ctx.metrics.notifications.with_label_values(&["failed"]).inc();
            tracing::warn!(id = %due.id, %error, "notification given up");
            notifications::failed(&ctx.pool, due.id, &error, None).await
        }
        Err(error) => {
            ctx.metrics.notifications.with_label_values(&["retry"]).inc();
            let next = Utc::now() + backoff(due.attempts);
            tracing::info!(id = %due.id, %error, %next, "notification failed; will retry");
            notifications::failed(&ctx.pool, due.id, &error, Some(next)).await
        }
    };
    if let Err(error) = recorded {
        tracing::warn!(%error, "cannot record a notification attempt; it will be retried");
    }
}

async fn attempt(ctx: &Context, http: &reqwest::Client, due: &Due) -> Result<(), String> {
    let url = due
        .notify_url
        .as_deref()
        .ok_or("the business removed its notifyUrl")?;
    let secret = due
        .notify_secret_enc
        .as_deref()
        .ok_or("the business has no notification secret")?;
    let secret = ctx
        .keyring
        .decrypt(secret, notify_secret_associated_data(due.customer_id).as_bytes())
        .map_err(|e| format!("notification secret: {e}"))?;
    let body = serde_json::to_vec(&due.payload).map_err(|e| e.to_string())?;
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-omnidm-event", &due.event)
        .header("x-omnidm-delivery", due.id.to_string())
        .header(
            "x-omnidm-signature",
            sign(secret.expose_secret().as_bytes(), &body),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| omnidm_shared::meta::graph::describe(&e))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status()))
    }
}

/// Wait before attempt `attempts + 1`: 2^attempts seconds, at most an hour, with ±25 % jitter so a
/// business's server coming back is not met by every retry at once.
fn backoff(attempts: i32) -> chrono::Duration {
    let base = 2f64.powi(attempts.clamp(0, 12)).min(3_600.0);
    let jitter = rand::thread_rng().gen_range(0.75..1.25);
    chrono::Duration::milliseconds((base * jitter * 1_000.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_metas_format_over_the_exact_body() {
        // Signed as Meta signs its webhooks (shared::signature), so a receiver can reuse its check;
        // the classic "quick brown fox" HMAC-SHA256 vector.
        assert_eq!(
            sign(b"key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn backoff_grows_to_an_hour_and_jitters() {
        assert!(backoff(1) < chrono::Duration::seconds(3));
        assert!(backoff(30) <= chrono::Duration::seconds(4_500));
        assert!(backoff(30) >= chrono::Duration::seconds(2_700));
    }
}
