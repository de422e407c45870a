//! One job, start to finish: classify the event, route it to its tenant, persist it idempotently, and
//! hand messages that want an answer to the reply pass. Exposed so tests can drive a single step.

use crate::context::{Attempt, Context, Outcome};
use crate::store::{credentials, messages};
use crate::{echo, reply};
use chrono::{DateTime, Utc};
use omnidm_shared::job::{EventSource, JobV1};
use omnidm_shared::meta::event::{classify, Event, EventKind, ReactionAction};

/// Processes one job and says what became of it.
pub async fn process(ctx: &Context, job: &JobV1<'_>, attempt: Attempt) -> Outcome {
    let event = match classify(job.source, job.event.get()) {
        Ok(event) => event,
        Err(error) => {
            return Outcome::Dead {
                reason: "unparseable",
                detail: error.to_string(),
            }
        }
    };
    let kind = event.kind.name();
    tracing::Span::current().record("kind", kind);
    match process_event(ctx, job, &event, attempt).await {
        Ok(outcome) => outcome,
        Err(error) => error.into(),
    }
}

async fn process_event(
    ctx: &Context,
    job: &JobV1<'_>,
    event: &Event,
    attempt: Attempt,
) -> Result<Outcome, sqlx::Error> {
    let ignore = |kind: &str| {
        ctx.metrics.ignored.with_label_values(&[kind]).inc();
        Ok(Outcome::Done)
    };
    if let EventKind::ChangeField { .. } | EventKind::Malformed { .. } | EventKind::Unknown { .. } =
        event.kind
    {
        tracing::info!(kind = event.kind.name(), "event ignored");
        return ignore(event.kind.name());
    }
    // Routed by the entry's id; Meta's own examples sometimes carry another id there (a postback's entry
    // id is the user's in the docs), so the event's recipient is the second choice.
    let mut credential = ctx.routes.route(&ctx.pool, &job.entry_id, !job.recovered).await?;
    if credential.is_none() {
        if let Some(recipient) = event.recipient.as_ref().filter(|r| r.as_str() != job.entry_id) {
            credential = ctx
                .routes
                .route(&ctx.pool, recipient.as_str(), !job.recovered)
                .await?;
        }
    }
    let Some(credential) = credential else {
        let reason = if event.is_dashboard_test(&job.entry_id) {
            "dashboard_test"
        } else {
            "unknown_account"
        };
        credentials::record_unrouted(
            &ctx.pool,
            &job.object,
            &job.entry_id,
            event.kind.name(),
            job.event.get(),
        )
        .await?;
        ctx.metrics.unrouted.with_label_values(&[reason]).inc();
        tracing::info!(reason, "event for no connected account recorded");
        return Ok(Outcome::Done);
    };
    let channel = credential.channel.as_str();
    let sent_at = event.sent_at().unwrap_or_else(|| received_at(job));
    match &event.kind {
        EventKind::Message(message) => {
            let text = message.text_for_ai();
            let standby = job.source == EventSource::Standby;
            let kind = if message.is_self { "self" } else { "message" };
            inbound(
                ctx,
                job,
                event,
                &credential,
                &message.mid,
                kind,
                &text,
                sent_at,
                standby || message.is_self,
            )
            .await
        }
        EventKind::Postback { mid, title, payload } => {
            let mid = mid.clone().unwrap_or_else(|| format!("postback:{}", job.job_id));
            let text = title
                .clone()
                .or_else(|| payload.clone())
                .unwrap_or_else(|| "[button]".into());
            inbound(
                ctx,
                job,
                event,
                &credential,
                &mid,
                "postback",
                &text,
                sent_at,
                job.source == EventSource::Standby,
            )
            .await
        }
        EventKind::Unsupported { mid } => {
            inbound(
                ctx,
                job,
                event,
                &credential,
                mid,
                "unsupported",
                "[unsupported message]",
                sent_at,
                true,
            )
            .await
        }
        EventKind::Echo(echo_message) => {
            echo::handle(ctx, &credential, event, echo_message, job, sent_at, attempt).await
        }
        EventKind::Deleted { mid } => {
            messages::mark_deleted(&ctx.pool, channel, mid).await?;
            Ok(Outcome::Done)
        }
        EventKind::Edit { mid, text, .. } => {
            if let Some(text) = text {
                messages::edit(&ctx.pool, channel, mid, text).await?;
            }
            Ok(Outcome::Done)
        }
        EventKind::Reaction {
            mid,
            action,
            reaction,
            emoji,
        } => {
            let user = event.sender.as_ref().map(|s| s.as_str()).unwrap_or_default();
            let value = match action {
                ReactionAction::React => Some((reaction.as_deref().unwrap_or("other"), emoji.as_deref())),
                ReactionAction::Unreact => None,
            };
            if !messages::react(&ctx.pool, channel, mid, user, value).await? {
                return ignore("reaction_unknown_message");
            }
            Ok(Outcome::Done)
        }
        other => ignore(other.name()),
    }
}

/// Stores an inbound message and, unless it is only to be recorded, runs the reply pass.
#[allow(clippy::too_many_arguments)]
async fn inbound(
    ctx: &Context,
    job: &JobV1<'_>,
    event: &Event,
    credential: &credentials::Credential,
    mid: &str,
    kind: &str,
    text: &str,
    sent_at: DateTime<Utc>,
    record_only: bool,
) -> Result<Outcome, sqlx::Error> {
    let Some(sender) = &event.sender else {
        ctx.metrics.ignored.with_label_values(&["no_sender"]).inc();
        return Ok(Outcome::Done);
    };
    // A recovered DM (the webhook never came) older than Meta's window cannot be answered any more.
    let missed = job.recovered
        && !record_only
        && sent_at < Utc::now() - chrono::Duration::hours(i64::from(messages::MESSAGING_WINDOW_HOURS));
    let reason = match (record_only, job.source, kind) {
        _ if missed => Some("missed_outside_window"),
        (false, _, _) => None,
        (true, EventSource::Standby, _) => Some("standby"),
        (true, _, "unsupported") => Some("unsupported"),
        (true, _, _) => Some("self"),
    };
    let new = messages::NewMessage {
        mid,
        author: "customer",
        kind,
        text: Some(text),
        raw: job.event.get(),
        meta_timestamp: sent_at,
        status: if reason.is_some() { "ignored" } else { "pending" },
        status_reason: reason,
    };
    let stored = ctx
        .writes
        .stores
        .call(messages::ToStore::new(credential, sender.as_str(), &new))
        .await?;
    if !stored.inserted {
        ctx.metrics.duplicates.inc();
        tracing::debug!("message already stored (redelivery)");
    } else if missed {
        ctx.metrics.missed.inc();
        tracing::warn!(%mid, "recovered DM is outside the 24-hour window; stored as missed");
    } else if job.recovered {
        ctx.metrics.recovered.inc();
        tracing::info!(%mid, "DM recovered by reconciliation (no webhook came)");
    }
    if let Some(reason) = reason {
        ctx.metrics.ignored.with_label_values(&[reason]).inc();
        return Ok(Outcome::Done);
    }
    Ok(reply::run(ctx, stored.conversation_id).await)
}

fn received_at(job: &JobV1<'_>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(job.received_at_ms).unwrap_or_else(Utc::now)
}
