//! The reply pass for one conversation: under its lease, answer every pending inbound message (a burst
//! merged into one AI call, in Meta-timestamp order), then send the answer chunk by chunk.
//!
//! Who speaks decides first: only a conversation in the `bot` state is answered, and within it the
//! reply policy decides per message kind (the AI, a fixed text, or nothing). The AI may hand the
//! conversation to a person instead of answering (`handoff_to_human`).
//!
//! Nothing is held open across the AI call but the lease row, which expires on its own if this worker
//! dies. The AI's answer is committed as `queued` chunks *before* sending, so a crash after that point
//! resumes sending instead of asking the AI again, and each chunk is marked `sending` before Meta is
//! called so its echo is recognised even if it overtakes the Send API's answer.

use crate::ai::{AiError, Answer};
use crate::chunk;
use crate::context::{Context, Outcome};
use crate::store::lease::{Lease, Leased};
use crate::store::{outbound, work};
use chrono::Utc;
use omnidm_shared::states::{Author, MessageStatus};
use omnidm_shared::topology::Topology;
use std::time::{Duration, Instant};
use uuid::Uuid;

mod escalate;
mod pass_state;
mod plan;
mod send;

use escalate::{escalate, pass_to_inbox, Escalating};
use pass_state::{Account, Overhead};
use plan::{prompt, Plan};
use send::{send_all, Sending, Sent};

/// Runs the reply pass and always gives the lease back.
#[tracing::instrument(name = "reply", skip_all, fields(%conversation_id))]
pub async fn run(ctx: &Context, conversation_id: Uuid) -> Outcome {
    let mut clock = Overhead::start();
    // The lease belongs to this pass, not to the process: concurrent jobs of one worker must exclude
    // each other as much as jobs of different workers do.
    let lease = Lease::for_pass(conversation_id, ctx.lease);
    let outcome = match pass(ctx, &lease, &mut clock).await {
        Ok(Ending::LetGo(outcome)) => outcome,
        Ok(Ending::Holding(outcome)) => {
            give_back(ctx, &lease).await;
            outcome
        }
        Err(error) => {
            // Perhaps held: giving back a lease that is not ours changes nothing.
            give_back(ctx, &lease).await;
            error.into()
        }
    };
    ctx.metrics.reply_overhead.observe(clock.total().as_secs_f64());
    outcome
}

async fn give_back(ctx: &Context, lease: &Lease) {
    if let Err(error) = lease.release(&ctx.pool).await {
        tracing::warn!(%error, "cannot release conversation lease; it will expire");
    }
}

/// How a pass ended, as far as its lease goes: each way out says whether it still holds the lease, so
/// [`run`] gives it back exactly when it must.
enum Ending {
    /// The lease is not ours: given back with the pass's last write, lost to a faster pass, or never
    /// taken.
    LetGo(Outcome),
    /// Still ours, to give back.
    Holding(Outcome),
}

/// Another pass holds the conversation; it will see our message, or we come back.
fn busy() -> Outcome {
    Outcome::Wait {
        after: Duration::from_secs(1),
        reason: "conversation_busy",
    }
}

/// The pass proper.
///
/// A reply for one new message costs three statements, each shared with the process's other jobs
/// ([`crate::store::Writes`]): the lease with the account, the work list and the history; storing
/// the reply with its first chunk claimed for sending; and marking that chunk sent together with giving
/// the lease back if nothing else came.
async fn pass(ctx: &Context, lease: &Lease, clock: &mut Overhead) -> Result<Ending, sqlx::Error> {
    use Ending::{Holding, LetGo};
    loop {
        let Some(leased) = ctx.writes.take(*lease).await? else {
            return Ok(LetGo(busy()));
        };
        let Leased {
            state,
            last_inbound_at: last_inbound,
            external_user_id: recipient,
            channel,
            credential,
            work,
            ..
        } = leased;
        let mut account = Account::read_now(credential);
        let work::Work {
            pending,
            unsent,
            history,
        } = work;
        let sending = Sending {
            lease,
            recipient: &recipient,
            last_inbound,
        };
        if !unsent.is_empty() {
            match send_all(ctx, &sending, &mut account, &unsent, clock).await? {
                Sent::All(last) => {
                    if let Some(last) = last {
                        outbound::mark_sent(&ctx.pool, last.id, &last.mid).await?;
                    }
                    continue;
                }
                Sent::Stopped(outcome) => return Ok(Holding(outcome)),
            }
        }
        let Some(newest) = pending.iter().map(|p| p.created_at).max() else {
            if lease.release_if_idle(&ctx.pool).await? {
                return Ok(LetGo(Outcome::Done));
            }
            // A message arrived since the work list was read: it is ours to answer.
            continue;
        };
        if let Some(reason) = state.quiet_reason() {
            // A person or another app has the conversation: stored, not answered.
            let ids: Vec<Uuid> = pending.iter().map(|p| p.id).collect();
            work::close_pending(&ctx.pool, &ids, MessageStatus::Ignored, reason).await?;
            ctx.metrics
                .ignored
                .with_label_values(&[reason])
                .inc_by(ids.len() as u64);
            return Ok(Holding(Outcome::Done));
        }
        if !account.credential.can_send() {
            // Parked: stored and pending; answered once the account is reconnected.
            ctx.metrics
                .ignored
                .with_label_values(&["account_needs_reauth"])
                .inc();
            return Ok(Holding(Outcome::Done));
        }
        let quiet_until = newest + ctx.debounce;
        let now = Utc::now();
        if quiet_until > now {
            // A burst may still be arriving: wait for it to settle, then look again.
            let wait = (quiet_until - now).to_std().unwrap_or_default();
            clock.pause(tokio::time::sleep(wait)).await;
            continue;
        }
        let plan = Plan::of(&account.credential, &pending);
        if !plan.recorded.is_empty() {
            // The business changed its policy since these were stored.
            work::close_pending(&ctx.pool, &plan.recorded, MessageStatus::Ignored, "policy").await?;
        }
        if plan.answered.is_empty() {
            continue;
        }
        let mut chunks: Vec<String> = plan
            .fixed
            .iter()
            .flat_map(|text| chunk::split(text, chunk::MAX_CHUNK_BYTES))
            .collect();
        let mut handoff = None;
        if !plan.for_ai.is_empty() {
            if let Some(after) = reply_rate_wait(&history, ctx.replies_per_minute) {
                // Enough replies this minute: what the customer writes meanwhile waits and is merged.
                ctx.metrics.cost_guards.with_label_values(&["rate_limited"]).inc();
                // Back no later than needed: the retry tiers are coarse (a 40 s wait would be 120 s).
                return Ok(Holding(Outcome::Wait {
                    after: Topology::tier_within(after),
                    reason: "reply_rate",
                }));
            }
            // A burst merges at most the newest few messages into one call: the cost of a call is
            // bounded whatever a stranger sends; the older ones are answered by it all the same.
            let skip = plan.for_ai.len().saturating_sub(ctx.max_burst);
            if skip > 0 {
                ctx.metrics
                    .cost_guards
                    .with_label_values(&["burst_trimmed"])
                    .inc();
            }
            let answering = &plan.for_ai[skip..];
            let answer = ask(ctx, clock, &account.credential.system_prompt, history, answering).await;
            match answer {
                Ok(Answer::Text(answer)) => {
                    let (answer, cut) =
                        chunk::split_at_most(&answer, chunk::MAX_CHUNK_BYTES, ctx.max_reply_chunks);
                    if cut {
                        ctx.metrics
                            .cost_guards
                            .with_label_values(&["reply_truncated"])
                            .inc();
                    }
                    chunks.extend(answer);
                }
                Ok(Answer::Handoff { reason }) => {
                    // The person's words, not the AI's: nothing the AI wrote goes out.
                    chunks = chunk::split(account.credential.handoff_message(), chunk::MAX_CHUNK_BYTES);
                    handoff = Some(reason);
                }
                Err(AiError::ContextTooLong(detail)) => {
                    // Too long even without history: these messages cannot be answered by this model.
                    // The rest of the burst (fixed replies) goes out on the next round.
                    let ids: Vec<Uuid> = plan.for_ai.iter().map(|p| p.id).collect();
                    work::close_pending(&ctx.pool, &ids, MessageStatus::Failed, "ai_context_too_long")
                        .await?;
                    tracing::warn!(%detail, "messages too long for the AI's context; failed");
                    continue;
                }
                Err(AiError::Permanent(detail)) => {
                    // A bad key or a refused request: retrying cannot help, only fixing the cause;
                    // the dead-letter queue keeps the job to replay then.
                    return Ok(Holding(Outcome::Dead {
                        reason: "ai_rejected",
                        detail,
                    }));
                }
                Err(error) => {
                    return Ok(Holding(Outcome::Failed {
                        reason: "ai",
                        detail: error.to_string(),
                    }));
                }
            }
        }
        account.refresh(&ctx.pool).await?;
        let claim_first = account.credential.can_send() && account.credential.send_paused().is_none();
        let reply = outbound::NewReply {
            lease: *lease,
            answers: plan.answered.clone(),
            chunks,
            claim_first,
        };
        let Some(unsent) = ctx.writes.create_reply(reply).await? else {
            // Our lease expired during a very slow AI call and another pass took over: let it answer.
            return Ok(LetGo(busy()));
        };
        ctx.metrics.replies.inc();
        if let Some(reason) = &handoff {
            escalate(
                ctx,
                &Escalating {
                    conversation_id: lease.conversation_id,
                    credential: &account.credential,
                    recipient: &recipient,
                    channel,
                },
                reason,
            )
            .await?;
        }
        let oldest = pending.iter().map(|p| p.meta_timestamp).min();
        match send_all(ctx, &sending, &mut account, &unsent, clock).await? {
            Sent::All(last) => {
                if let Some(oldest) = oldest {
                    let latency = (Utc::now() - oldest).to_std().unwrap_or_default();
                    ctx.metrics.reply_latency.observe(latency.as_secs_f64());
                }
                if let Some(reason) = &handoff {
                    pass_to_inbox(ctx, &account.credential, &recipient, reason).await;
                }
                let released = match last {
                    Some(last) => ctx.writes.finish_reply(last).await?,
                    None => lease.release_if_idle(&ctx.pool).await?,
                };
                if released {
                    return Ok(LetGo(Outcome::Done));
                }
            }
            Sent::Stopped(outcome) => return Ok(Holding(outcome)),
        }
    }
}

/// Asks the AI for the reply to `answering`. A conversation too long for the model's context is asked
/// once more with no history (the messages being answered still go). Errors are counted here.
async fn ask(
    ctx: &Context,
    clock: &mut Overhead,
    system_prompt: &str,
    history: Vec<work::HistoryLine>,
    answering: &[&work::Pending],
) -> Result<Answer, AiError> {
    let mut answer = call(ctx, clock, &prompt(system_prompt, history, answering)).await;
    if let Err(AiError::ContextTooLong(_)) = &answer {
        ctx.metrics
            .ai_errors
            .with_label_values(&["context_too_long"])
            .inc();
        answer = call(ctx, clock, &prompt(system_prompt, Vec::new(), answering)).await;
    }
    if let Err(error) = &answer {
        ctx.metrics.ai_errors.with_label_values(&[error.label()]).inc();
    }
    answer
}

async fn call(
    ctx: &Context,
    clock: &mut Overhead,
    prompt: &[crate::ai::ChatMessage],
) -> Result<Answer, AiError> {
    let started = Instant::now();
    let answer = clock.pause(ctx.ai.complete(prompt)).await;
    ctx.metrics.ai_duration.observe(started.elapsed().as_secs_f64());
    answer
}

/// The window of [`reply_rate_wait`].
const REPLY_RATE_WINDOW: Duration = Duration::from_secs(60);

/// How long to wait before the conversation may have another AI reply, if it had `per_minute` of them
/// in the last minute (counted from the history the lease read: the last `CONTEXT_MESSAGES` lines).
fn reply_rate_wait(history: &[work::HistoryLine], per_minute: usize) -> Option<Duration> {
    let since = Utc::now() - REPLY_RATE_WINDOW;
    let mut recent: Vec<_> = history
        .iter()
        .filter(|line| line.author == Author::Ai && line.starts_reply && line.created_at > since)
        .map(|line| line.created_at)
        .collect();
    if recent.len() < per_minute {
        return None;
    }
    recent.sort_unstable();
    // The reply that leaves the window first frees a place for ours.
    let frees = recent[recent.len() - per_minute] + REPLY_RATE_WINDOW;
    Some(
        (frees - Utc::now())
            .to_std()
            .unwrap_or_default()
            .max(Duration::from_millis(100)),
    )
}
