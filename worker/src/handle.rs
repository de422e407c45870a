//! One job, start to finish: classify the event, route it to its tenant and channel, persist it
//! idempotently, apply the reply policy, and hand messages that want an answer to the reply pass.
//! Exposed so tests can drive a single step.

use crate::context::{Attempt, Context, Outcome};
use crate::store::{credentials, inbound};
use crate::{echo, handover, reply};
use chrono::{DateTime, Utc};
use omnidm_shared::job::{EventSource, JobV1};
use omnidm_shared::meta::event::{classify, Event, EventKind, ReactionAction};
use omnidm_shared::policy::{Decision, MessageKind};
use omnidm_shared::states::{Author, Channel, MessageStatus};
use omnidm_shared::transitions;
use sha2::{Digest, Sha256};

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
    if let EventKind::ChangeField { .. } | EventKind::Malformed { .. } | EventKind::Unknown { .. } =
        event.kind
    {
        tracing::info!(kind = event.kind.name(), "event ignored");
        return Ok(ignore(ctx, event.kind.name()));
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
    let channel = Channel::of_object(&job.object);
    if channel == Channel::Messenger && !credential.messenger_enabled {
        // The business did not turn Messenger on: its Page's DMs are none of our business.
        return Ok(ignore(ctx, "messenger_disabled"));
    }
    let to = Inbound {
        ctx,
        job,
        event,
        credential: &credential,
        channel,
        sent_at: event.sent_at().unwrap_or_else(|| received_at(job)),
    };
    let account = credential.account_id.as_str();
    match &event.kind {
        EventKind::Message(message) => {
            let how = if message.is_self {
                Arrival::RecordOnly("self")
            } else {
                to.arrival()
            };
            to.store(&message.mid, message.kind(), &message.text_for_ai(), how)
                .await
        }
        EventKind::Postback { mid, title, payload } => {
            let mid = mid.clone().unwrap_or_else(|| to.postback_key(payload, title));
            let text = title
                .clone()
                .or_else(|| payload.clone())
                .unwrap_or_else(|| "[button]".into());
            to.store(&mid, MessageKind::Postback, &text, to.arrival()).await
        }
        EventKind::Unsupported { mid } => {
            to.store(
                mid,
                MessageKind::Unsupported,
                "[unsupported message]",
                to.arrival(),
            )
            .await
        }
        EventKind::Echo(echo_message) => {
            echo::handle(
                ctx,
                &credential,
                channel,
                event,
                echo_message,
                job,
                to.sent_at,
                attempt,
            )
            .await
        }
        EventKind::Handover { .. } => handover::handle(ctx, &credential, channel, event).await,
        EventKind::Deleted { mid } => {
            inbound::mark_deleted(&ctx.pool, account, mid).await?;
            Ok(Outcome::Done)
        }
        EventKind::Edit { mid, text, .. } => {
            if let Some(text) = text {
                if !inbound::edit(&ctx.pool, account, mid, text, to.sent_at).await? {
                    ctx.metrics
                        .ignored
                        .with_label_values(&["edit_stale_or_unknown"])
                        .inc();
                }
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
            count_decision(ctx, MessageKind::Reaction, &Decision::Record);
            if !inbound::react(&ctx.pool, account, mid, user, value, to.sent_at).await? {
                return Ok(ignore(ctx, "reaction_unknown_message"));
            }
            Ok(Outcome::Done)
        }
        other => Ok(ignore(ctx, other.name())),
    }
}

/// Counts a deliberately unanswered event.
fn ignore(ctx: &Context, reason: &str) -> Outcome {
    ctx.metrics.ignored.with_label_values(&[reason]).inc();
    Outcome::Done
}

fn count_decision(ctx: &Context, kind: MessageKind, decision: &Decision) {
    ctx.metrics
        .policy
        .with_label_values(&[kind.as_str(), decision.label()])
        .inc();
}

/// How a customer message arrived, before the reply policy has its say.
enum Arrival {
    /// In `messaging[]`, by webhook or recovered in time: the policy decides.
    Answerable,
    /// Stored and never answered, for this reason.
    RecordOnly(&'static str),
    /// On the standby channel: another app owns the thread.
    Standby,
}

/// A customer event of one account, on one channel.
struct Inbound<'a> {
    ctx: &'a Context,
    job: &'a JobV1<'a>,
    event: &'a Event,
    credential: &'a credentials::Credential,
    channel: Channel,
    /// Meta's time of the event.
    sent_at: DateTime<Utc>,
}

impl Inbound<'_> {
    fn arrival(&self) -> Arrival {
        // A recovered DM (the webhook never came) older than Meta's window cannot be answered any more.
        let missed = self.job.recovered
            && self.sent_at
                < Utc::now() - chrono::Duration::hours(omnidm_shared::meta::window::STANDARD_HOURS);
        match self.job.source {
            _ if missed => Arrival::RecordOnly("missed_outside_window"),
            EventSource::Standby => Arrival::Standby,
            _ => Arrival::Answerable,
        }
    }

    /// A postback without Meta's id, keyed by what identifies it: the account, the customer, Meta's
    /// timestamp and the button, so the same tap delivered twice (or a replayed body) is one message.
    fn postback_key(&self, payload: &Option<String>, title: &Option<String>) -> String {
        let sender = self.event.sender.as_ref().map(|s| s.as_str()).unwrap_or_default();
        let mut hash = Sha256::new();
        for part in [
            self.credential.account_id.as_str(),
            sender,
            &self.sent_at.timestamp_millis().to_string(),
            payload.as_deref().unwrap_or_default(),
            title.as_deref().unwrap_or_default(),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        format!("postback:{}", hex::encode(hash.finalize()))
    }

    /// Stores a customer message and, if it is to be answered, runs the reply pass.
    async fn store(
        &self,
        mid: &str,
        kind: MessageKind,
        text: &str,
        arrival: Arrival,
    ) -> Result<Outcome, sqlx::Error> {
        let ctx = self.ctx;
        let Some(sender) = &self.event.sender else {
            return Ok(ignore(ctx, "no_sender"));
        };
        let decision = self.credential.reply_policy.decide(kind);
        let reason = match &arrival {
            Arrival::RecordOnly(reason) => Some(*reason),
            Arrival::Standby => Some("standby"),
            Arrival::Answerable if decision == Decision::Record => Some("policy"),
            Arrival::Answerable => None,
        };
        let new = inbound::NewMessage {
            mid,
            author: Author::Customer,
            kind,
            text: Some(text),
            raw: self.job.event.get(),
            meta_timestamp: self.sent_at,
            status: if reason.is_some() {
                MessageStatus::Ignored
            } else {
                MessageStatus::Pending
            },
            status_reason: reason,
        };
        let stored = ctx
            .writes
            .store_message(inbound::ToStore::new(
                self.credential,
                self.channel,
                sender.as_str(),
                &new,
            ))
            .await?;
        if !stored.inserted {
            ctx.metrics.duplicates.inc();
            tracing::debug!("message already stored (redelivery)");
        } else {
            if let Arrival::Answerable = arrival {
                count_decision(ctx, kind, &decision);
            }
            if reason == Some("missed_outside_window") {
                ctx.metrics.missed.inc();
                tracing::warn!(%mid, "recovered DM is outside the 24-hour window; stored as missed");
            } else if self.job.recovered {
                ctx.metrics.recovered.inc();
                tracing::info!(%mid, "DM recovered by reconciliation (no webhook came)");
            }
        }
        if let Arrival::Standby = arrival {
            handover::thread_is_elsewhere(ctx, stored.conversation_id, &transitions::STANDBY, None).await?;
        }
        if let Some(reason) = reason {
            return Ok(ignore(ctx, reason));
        }
        Ok(reply::run(ctx, stored.conversation_id).await)
    }
}

fn received_at(job: &JobV1<'_>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(job.received_at_ms).unwrap_or_else(Utc::now)
}
