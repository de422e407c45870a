//! Sending a reply's chunks in order, under Meta's rules: what each Send API answer means for the
//! chunk, the account and the conversation.

use super::pass_state::{Account, Overhead};
use crate::context::{Context, Outcome};
use crate::graph::Messaging;
use crate::store::conversations::Change;
use crate::store::credentials;
use crate::store::lease::Lease;
use crate::store::{outbound, work};
use chrono::{DateTime, Utc};
use omnidm_shared::meta::graph_error::ErrorClass;
use omnidm_shared::meta::window::{self, Window};
use omnidm_shared::states::{Author, MessageStatus};
use omnidm_shared::transitions;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a chunk may sit in `sending` with no echo before we conclude it never left and resend it.
const UNKNOWN_SEND_GRACE: Duration = Duration::from_secs(30);

/// How far [`send_all`] got.
pub(super) enum Sent {
    /// Every chunk went out (if there were any). The last one is not marked sent yet: the caller does it
    /// in the same round trip as its next step.
    All(Option<outbound::ReplySent>),
    /// A chunk could not go out now; the outcome says why and what happens next.
    Stopped(Outcome),
}

/// Who [`send_all`] sends to, for which pass.
pub(super) struct Sending<'a> {
    pub(super) lease: &'a Lease,
    pub(super) recipient: &'a str,
    /// Meta's time of the customer's last message: a person's chunk goes under the window it falls in.
    pub(super) last_inbound: Option<DateTime<Utc>>,
}

/// Sends chunks in order; stops at the first that cannot go out now and says why.
pub(super) async fn send_all(
    ctx: &Context,
    sending: &Sending<'_>,
    account: &mut Account,
    chunks: &[work::Unsent],
    clock: &mut Overhead,
) -> Result<Sent, sqlx::Error> {
    let (lease, recipient) = (sending.lease, sending.recipient);
    let mut last: Option<outbound::ReplySent> = None;
    for (index, chunk) in chunks.iter().enumerate() {
        if let Some(previous) = last.take() {
            outbound::mark_sent(&ctx.pool, previous.id, &previous.mid).await?;
        }
        let rest: Vec<Uuid> = chunks[index..].iter().map(|c| c.id).collect();
        account.refresh(&ctx.pool).await?;
        let credential = &account.credential;
        if !credential.can_send() {
            outbound::set_status(&ctx.pool, &rest, MessageStatus::Parked, Some("reauth_required")).await?;
            return Ok(Sent::Stopped(Outcome::Done));
        }
        if let Some(until) = credential.send_paused() {
            if chunk.claimed {
                // Claimed a moment ago, never attempted: waiting for an echo would only delay it.
                outbound::set_status(&ctx.pool, &[chunk.id], MessageStatus::Queued, None).await?;
            }
            let wait = (until - Utc::now()).to_std().unwrap_or_default();
            return Ok(Sent::Stopped(Outcome::Wait {
                after: wait,
                reason: "throttled",
            }));
        }
        let messaging = match (chunk.author, window::at(sending.last_inbound, Utc::now())) {
            (Author::Human, Window::Standard) | (Author::Ai | Author::Customer, _) => Messaging::Response,
            (Author::Human, Window::HumanAgent) => Messaging::HumanAgent,
            (Author::Human, Window::Closed) => {
                // Refused at the API when it was written; the window closed while it waited.
                outbound::set_status(
                    &ctx.pool,
                    &[chunk.id],
                    MessageStatus::Failed,
                    Some("outside_window"),
                )
                .await?;
                continue;
            }
        };
        if chunk.status == MessageStatus::Sending && !chunk.claimed {
            let attempted = chunk.send_attempted_at.unwrap_or_else(Utc::now);
            let age = (Utc::now() - attempted).to_std().unwrap_or_default();
            if age < UNKNOWN_SEND_GRACE {
                // Outcome unknown (a crash or "sent, but error"): give the echo time to tell us.
                return Ok(Sent::Stopped(Outcome::Wait {
                    after: UNKNOWN_SEND_GRACE - age,
                    reason: "awaiting_echo",
                }));
            }
            tracing::warn!(chunk = %chunk.id, "no echo for a chunk whose send outcome was unknown; resending");
        }
        let token = match credential.access_token(&ctx.keyring) {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(%error, "cannot decrypt the account's token; parking replies");
                outbound::set_status(
                    &ctx.pool,
                    &rest,
                    MessageStatus::Parked,
                    Some("token_undecryptable"),
                )
                .await?;
                return Ok(Sent::Stopped(Outcome::Done));
            }
        };
        if !chunk.claimed {
            outbound::mark_sending(&ctx.pool, chunk.id).await?;
        }
        let started = Instant::now();
        let result = clock
            .pause(
                ctx.graph
                    .send_text(credential.host(), &token, recipient, &chunk.text, messaging),
            )
            .await;
        ctx.metrics.send_duration.observe(started.elapsed().as_secs_f64());
        let error = match result {
            Ok(mid) => {
                last = Some(outbound::ReplySent {
                    lease: *lease,
                    id: chunk.id,
                    mid,
                });
                ctx.metrics.messages_sent.inc();
                continue;
            }
            Err(error) => error,
        };
        ctx.metrics
            .send_errors
            .with_label_values(&[error.class.label()])
            .inc();
        tracing::warn!(%error, "send failed");
        return Ok(Sent::Stopped(match error.class {
            ErrorClass::Transient => {
                outbound::set_status(&ctx.pool, &[chunk.id], MessageStatus::Queued, None).await?;
                Outcome::Failed {
                    reason: "send",
                    detail: error.detail,
                }
            }
            ErrorClass::Throttled { wait } => {
                outbound::set_status(&ctx.pool, &[chunk.id], MessageStatus::Queued, None).await?;
                let until = Utc::now() + wait;
                credentials::pause_sending(&ctx.pool, credential.id, until).await?;
                tracing::warn!(%until, "Meta throttled the account; every worker pauses sending");
                Outcome::Wait {
                    after: wait,
                    reason: "throttled",
                }
            }
            ErrorClass::TokenDead => {
                credentials::mark_reauth_required(&ctx.pool, credential.id, &error.detail).await?;
                outbound::set_status(&ctx.pool, &rest, MessageStatus::Parked, Some("reauth_required"))
                    .await?;
                Outcome::Done
            }
            ErrorClass::ThreadElsewhere => {
                // Not a failure to retry: another app owns the thread, and it is quiet time for us.
                outbound::set_status(&ctx.pool, &rest, MessageStatus::Failed, Some("thread_elsewhere"))
                    .await?;
                ctx.change_state(
                    sending.lease.conversation_id,
                    &transitions::SEND_REFUSED,
                    Change::default(),
                )
                .await?;
                Outcome::Done
            }
            ErrorClass::SentButError => Outcome::Wait {
                after: Duration::from_secs(5),
                reason: "awaiting_echo",
            },
            ErrorClass::OutsideWindow | ErrorClass::UserUnreachable | ErrorClass::Permanent => {
                outbound::set_status(&ctx.pool, &rest, MessageStatus::Failed, Some(error.class.label()))
                    .await?;
                Outcome::Done
            }
        }));
    }
    Ok(Sent::All(last))
}
