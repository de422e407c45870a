//! Never miss a DM even when Meta does: webhooks are the fast path, and this reconciler is the safety
//! net. Every `RECONCILE_INTERVAL_SECONDS`, each connected account is compared with Meta's
//! Conversations API by exactly one worker of the fleet (a lease on the account's row). Every customer
//! message Meta has and we do not is fed into the normal pipeline as a job marked `recovered`: the
//! worker's dedupe makes a late webhook for it harmless, and it is answered only inside Meta's 24-hour
//! window (older ones are stored as missed).
//!
//! When messages had to be recovered, or the API shows customer messages newer than the account's last
//! webhook, the account's `subscribed_apps` is checked and the subscription restored if Meta dropped it
//! (it does after about an hour of failed deliveries). Either way an account event records what
//! happened ("webhooks were off for 47 minutes, 3 DMs recovered").
//!
//! Budget: Meta allows 2 Conversations API calls per second per account. One worker holds an account at
//! a time and spaces its calls by [`CALL_SPACING`], so the fleet never exceeds it.

use crate::context::Context;
use crate::store::reconcile as store;
use crate::store::{credentials, inbound};
use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use omnidm_shared::amqp::{confirmed, Broker};
use omnidm_shared::job::{EventSource, Job, JobV1};
use omnidm_shared::meta::graph::GraphCallError;
use omnidm_shared::meta::login::{self, SUBSCRIBED_FIELDS};
use omnidm_shared::topology::{Topology, JOB_ROUTING_KEY};
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// At least this long between two Graph calls for one account: 2 calls/s, Meta's per-account budget.
pub const CALL_SPACING: Duration = Duration::from_millis(500);

/// Conversations listed per account and check; messages per conversation (Meta's default page).
const CONVERSATIONS_PER_CHECK: &str = "25";

/// The fields the reconciler reads.
const FIELDS: &str = "id,updated_time,messages.limit(20){id,created_time,from,to,message}";

/// Customer messages newer than the last webhook by more than this mean webhooks are not arriving.
const WEBHOOK_GRACE: chrono::Duration = chrono::Duration::seconds(60);

/// How far before the last check a listing starts (Meta's clock, late indexing).
const OVERLAP: chrono::Duration = chrono::Duration::minutes(10);

#[derive(Debug, Deserialize)]
struct Conversations {
    #[serde(default)]
    data: Vec<Conversation>,
}

#[derive(Debug, Deserialize)]
struct Conversation {
    #[serde(default)]
    updated_time: Option<String>,
    #[serde(default)]
    messages: Option<Messages>,
}

#[derive(Debug, Deserialize)]
struct Messages {
    #[serde(default)]
    data: Vec<GraphMessage>,
}

#[derive(Debug, Deserialize)]
struct GraphMessage {
    id: String,
    created_time: String,
    from: Option<Party>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Party {
    id: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct SubscribedApps {
    #[serde(default)]
    data: Vec<serde_json::Value>,
}

/// Runs the reconciler every `interval` until `stop`.
pub async fn run(
    ctx: Context,
    broker: Broker,
    topology: Topology,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // Checks go round as often as the interval allows; each account is due once per interval.
    let tick = (interval / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(error) = update_silence_gauge(&ctx).await {
            tracing::debug!(%error, "cannot update the webhook silence gauge");
        }
        loop {
            let claimed = match claim(&ctx, interval).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "cannot claim an account to reconcile");
                    break;
                }
            };
            let Some(credential_id) = claimed else { break };
            let outcome = match check(&ctx, &broker, &topology, credential_id).await {
                Ok(()) => "ok",
                Err(error) => {
                    tracing::warn!(%credential_id, %error, "reconcile failed; retried next interval");
                    "error"
                }
            };
            ctx.metrics.reconcile_runs.with_label_values(&[outcome]).inc();
            if *stop.borrow() {
                return;
            }
        }
    }
}

/// Claims one connected account due for a check (none checked it within `interval`, nobody holds it).
async fn claim(ctx: &Context, interval: Duration) -> sqlx::Result<Option<Uuid>> {
    store::claim(&ctx.pool, interval, interval.max(Duration::from_secs(60))).await
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Graph(#[from] GraphCallError),
    #[error("token: {0}")]
    Token(#[from] omnidm_shared::crypto::CryptoError),
    #[error("publish: {0}")]
    Publish(#[from] omnidm_shared::amqp::PublishError),
}

#[tracing::instrument(name = "reconcile", skip(ctx, broker, topology))]
async fn check(
    ctx: &Context,
    broker: &Broker,
    topology: &Topology,
    credential_id: Uuid,
) -> Result<(), CheckError> {
    let Some(credential) = credentials::get(&ctx.pool, credential_id).await? else {
        return Ok(());
    };
    let store::Times {
        reconciled_at,
        last_webhook_at,
        connected_at,
    } = store::times(&ctx.pool, credential_id).await?;
    let token = credential.access_token(&ctx.keyring)?;
    let host = credential.host();
    let node = credential.page_id.clone().unwrap_or_else(|| "me".to_owned());
    let listing: Conversations = ctx
        .graph
        .api()
        .get(
            host,
            &format!("{node}/conversations"),
            &[
                ("platform", "instagram"),
                ("fields", FIELDS),
                ("limit", CONVERSATIONS_PER_CHECK),
            ],
            Some(&token),
        )
        .await?;
    // Only what was written since the last check (with an overlap), and never before the account was
    // connected: connecting must not make the assistant answer yesterday's DMs a person already saw.
    // Meta's times have whole seconds: a DM written in the second of connecting still counts.
    let connected_at = connected_at - chrono::Duration::seconds(2);
    let since = reconciled_at
        .map(|at| at - OVERLAP)
        .map_or(connected_at, |at| at.max(connected_at));
    let mut inbound = Vec::new();
    for conversation in listing.data {
        let updated = conversation.updated_time.as_deref().and_then(parse_time);
        if updated.is_some_and(|updated| updated < since) {
            continue;
        }
        for message in conversation.messages.map(|m| m.data).unwrap_or_default() {
            let Some(from) = message.from.as_ref().map(|f| id_string(&f.id)) else {
                continue;
            };
            if from == credential.account_id {
                continue; // Our own (or a human's) outbound message.
            }
            let Some(at) = parse_time(&message.created_time).filter(|at| *at >= since) else {
                continue;
            };
            inbound.push((from, message, at));
        }
    }
    let newest_inbound = inbound.iter().map(|(_, _, at)| *at).max();
    let mut recovered = 0;
    for (from, message, at) in &inbound {
        if inbound::exists(&ctx.pool, &credential.account_id, &message.id).await? {
            continue;
        }
        publish_recovered(broker, topology, &credential.account_id, from, message, *at).await?;
        recovered += 1;
    }
    let silent_since = last_webhook_at;
    let webhooks_silent =
        newest_inbound.is_some_and(|newest| last_webhook_at.is_none_or(|last| newest > last + WEBHOOK_GRACE));
    if recovered > 0 || webhooks_silent {
        tokio::time::sleep(CALL_SPACING).await;
        let subscribed_path = format!("{node}/subscribed_apps");
        let apps: SubscribedApps = ctx
            .graph
            .api()
            .get(host, &subscribed_path, &[], Some(&token))
            .await?;
        let subscribed = apps.data.iter().any(|app| {
            app.get("subscribed_fields")
                .and_then(|f| f.as_array())
                .is_some_and(|fields| fields.iter().any(|f| f == "messages"))
        });
        let off_minutes = silent_since.map(|at| (Utc::now() - at).num_minutes());
        if subscribed {
            credentials::record_event(
                &ctx.pool,
                credential_id,
                "messages_recovered",
                serde_json::json!({ "recovered": recovered, "subscribed": true, "last_webhook_at": last_webhook_at }),
            )
            .await?;
        } else {
            tokio::time::sleep(CALL_SPACING).await;
            login::subscribe(
                ctx.graph.api(),
                credential.login(),
                credential.page_id.as_deref(),
                &token,
            )
            .await?;
            ctx.metrics.resubscriptions.inc();
            tracing::warn!(
                account_id = %credential.account_id,
                username = ?credential.username,
                recovered,
                ?off_minutes,
                "webhook subscription was gone; subscribed again"
            );
            credentials::record_event(
                &ctx.pool,
                credential_id,
                "resubscribed",
                serde_json::json!({
                    "recovered": recovered,
                    "webhooks_off_minutes": off_minutes,
                    "fields": SUBSCRIBED_FIELDS,
                }),
            )
            .await?;
        }
        if recovered > 0 {
            tracing::info!(account_id = %credential.account_id, recovered, "DMs recovered through the Conversations API");
        }
    }
    // Marked at the end, not the start: the next check of this account (by any worker) then starts a
    // whole interval after this one's last call, which keeps the fleet within the per-account budget.
    // The listing's overlap covers what was written while this check ran.
    store::checked(&ctx.pool, credential_id).await?;
    Ok(())
}

/// Publishes a recovered DM as the webhook event Meta would have sent, marked `recovered`.
async fn publish_recovered(
    broker: &Broker,
    topology: &Topology,
    account_id: &str,
    from: &str,
    message: &GraphMessage,
    at: DateTime<Utc>,
) -> Result<(), CheckError> {
    let event = serde_json::json!({
        "sender": { "id": from },
        "recipient": { "id": account_id },
        "timestamp": at.timestamp_millis(),
        "message": { "mid": message.id, "text": message.message.clone().unwrap_or_default() },
    });
    let raw = serde_json::value::to_raw_value(&event).expect("a JSON value serialises");
    let job_id = Uuid::now_v7();
    let job = Job::V1(JobV1 {
        job_id,
        object: "instagram".into(),
        entry_id: account_id.into(),
        source: EventSource::Messaging,
        received_at_ms: Utc::now().timestamp_millis(),
        recovered: true,
        event: &raw,
    });
    let session = broker
        .session()
        .ok_or(omnidm_shared::amqp::PublishError::Unavailable)?;
    let confirm = session
        .publish(
            &topology.work_exchange(),
            JOB_ROUTING_KEY,
            &job.to_vec(),
            BasicProperties::default()
                .with_message_id(job_id.to_string().into())
                .with_content_type("application/json".into()),
        )
        .await?;
    confirmed(confirm, Duration::from_secs(5)).await?;
    Ok(())
}

/// `worker_webhook_silence_max_seconds`: the longest time since the last webhook among active accounts
/// (since connecting, for an account that never had one).
async fn update_silence_gauge(ctx: &Context) -> sqlx::Result<()> {
    let seconds = store::longest_silence(&ctx.pool).await?;
    ctx.metrics.webhook_silence.set(seconds.unwrap_or(0.0));
    Ok(())
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn id_string(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_times_parse_in_both_of_metas_formats() {
        let a = parse_time("2026-11-24T00:00:05+0000").unwrap();
        let b = parse_time("2026-11-24T00:00:05Z").unwrap();
        assert_eq!(a, b);
        assert!(parse_time("yesterday").is_none());
    }
}
