//! The reply pass for one conversation: under its lease, answer every pending inbound message (a burst
//! merged into one AI call, in Meta-timestamp order), then send the answer chunk by chunk.
//!
//! Nothing is held open across the AI call but the lease row, which expires on its own if this worker
//! dies. The AI's answer is committed as `queued` chunks *before* sending, so a crash after that point
//! resumes sending instead of asking the AI again, and each chunk is marked `sending` before Meta is
//! called so its echo is recognised even if it overtakes the Send API's answer.

use crate::ai::{AiError, ChatMessage};
use crate::chunk;
use crate::context::{Context, Outcome};
use crate::store::conversations::{self, Lease};
use crate::store::credentials::{self, Credential};
use crate::store::messages;
use chrono::Utc;
use omnidm_shared::meta::graph_error::ErrorClass;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a chunk may sit in `sending` with no echo before we conclude it never left and resend it.
const UNKNOWN_SEND_GRACE: Duration = Duration::from_secs(30);

/// How long a pass trusts the account it read (status, throttle pause, token) before re-reading it
/// between chunks: long enough that a reply costs no extra round trip per chunk, short enough that a
/// throttle or a dead token another worker just recorded is honoured at once in practice (and Meta would
/// tell us again anyway).
const ACCOUNT_FRESH_FOR: Duration = Duration::from_secs(1);

/// Runs the reply pass and always gives the lease back.
#[tracing::instrument(name = "reply", skip_all, fields(%conversation_id))]
pub async fn run(ctx: &Context, conversation_id: Uuid) -> Outcome {
    let mut clock = Overhead::start();
    // The lease belongs to this pass, not to the process: concurrent jobs of one worker must exclude
    // each other as much as jobs of different workers do.
    let lease = Lease {
        conversation_id,
        owner: Uuid::new_v4(),
        ttl: ctx.lease,
    };
    let mut held = false;
    let outcome = pass(ctx, &lease, &mut held, &mut clock)
        .await
        .unwrap_or_else(Outcome::from);
    if held {
        if let Err(error) = conversations::release_lease(&ctx.pool, &lease).await {
            tracing::warn!(%error, "cannot release conversation lease; it will expire");
        }
    }
    ctx.metrics.reply_overhead.observe(clock.total().as_secs_f64());
    outcome
}

/// Another pass holds the conversation; it will see our message, or we come back.
fn busy() -> Outcome {
    Outcome::Wait {
        after: Duration::from_secs(1),
        reason: "conversation_busy",
    }
}

/// The pass proper. `held` says whether the lease is still ours to give back when it returns.
///
/// A reply for one new message costs three statements, each shared with the process's other jobs
/// ([`crate::context::Writes`]): the lease with the account, the work list and the history; storing
/// the reply with its first chunk claimed for sending; and marking that chunk sent together with giving
/// the lease back if nothing else came.
async fn pass(
    ctx: &Context,
    lease: &Lease,
    held: &mut bool,
    clock: &mut Overhead,
) -> Result<Outcome, sqlx::Error> {
    loop {
        let Some(leased) = take(ctx, lease).await? else {
            return Ok(busy());
        };
        *held = true;
        let recipient = leased.external_user_id;
        let mut account = Account::read_now(leased.credential);
        let messages::Work {
            pending,
            unsent,
            history,
        } = leased.work;
        if !unsent.is_empty() {
            match send_all(ctx, lease, &mut account, &recipient, &unsent, clock).await? {
                Sent::All(last) => {
                    if let Some(last) = last {
                        messages::mark_sent(&ctx.pool, last.id, &last.mid).await?;
                    }
                    continue;
                }
                Sent::Stopped(outcome) => return Ok(outcome),
            }
        }
        let Some(newest) = pending.iter().map(|p| p.created_at).max() else {
            if conversations::release_if_idle(&ctx.pool, lease).await? {
                *held = false;
                return Ok(Outcome::Done);
            }
            // A message arrived since the work list was read: it is ours to answer.
            continue;
        };
        if leased.ai_paused_until.is_some_and(|until| until > Utc::now()) {
            let ids: Vec<Uuid> = pending.iter().map(|p| p.id).collect();
            messages::ignore_pending(&ctx.pool, &ids, "human_takeover").await?;
            ctx.metrics
                .ignored
                .with_label_values(&["human_takeover"])
                .inc_by(ids.len() as u64);
            return Ok(Outcome::Done);
        }
        if !account.credential.can_send() {
            // Parked: stored and pending; answered once the account is reconnected.
            ctx.metrics
                .ignored
                .with_label_values(&["account_needs_reauth"])
                .inc();
            return Ok(Outcome::Done);
        }
        let quiet_until = newest + ctx.debounce;
        let now = Utc::now();
        if quiet_until > now {
            // A burst may still be arriving: wait for it to settle, then look again.
            let wait = (quiet_until - now).to_std().unwrap_or_default();
            clock.pause(tokio::time::sleep(wait)).await;
            continue;
        }
        let prompt = prompt(&account.credential.system_prompt, history, &pending);
        let started = Instant::now();
        let answer = clock.pause(ctx.ai.complete(&prompt)).await;
        ctx.metrics.ai_duration.observe(started.elapsed().as_secs_f64());
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                let kind = if matches!(error, AiError::Transient(_)) {
                    "transient"
                } else {
                    "permanent"
                };
                ctx.metrics.ai_errors.with_label_values(&[kind]).inc();
                return Ok(Outcome::Failed {
                    reason: "ai",
                    detail: error.to_string(),
                });
            }
        };
        let chunks = chunk::split(&answer, chunk::MAX_CHUNK_BYTES);
        let answered: Vec<Uuid> = pending.iter().map(|p| p.id).collect();
        account.refresh(&ctx.pool).await?;
        let claim_first = account.credential.can_send() && account.credential.send_paused().is_none();
        let channel = &account.credential.channel;
        let reply = messages::NewReply {
            lease: *lease,
            channel: channel.clone(),
            answers: answered,
            chunks,
            claim_first,
        };
        let Some(unsent) = ctx.writes.replies.call(reply).await? else {
            // Our lease expired during a very slow AI call and another pass took over: let it answer.
            *held = false;
            return Ok(busy());
        };
        ctx.metrics.replies.inc();
        let oldest = pending.iter().map(|p| p.meta_timestamp).min();
        match send_all(ctx, lease, &mut account, &recipient, &unsent, clock).await? {
            Sent::All(last) => {
                if let Some(oldest) = oldest {
                    let latency = (Utc::now() - oldest).to_std().unwrap_or_default();
                    ctx.metrics.reply_latency.observe(latency.as_secs_f64());
                }
                let released = match last {
                    Some(last) => ctx.writes.sent.call(last).await?,
                    None => conversations::release_if_idle(&ctx.pool, lease).await?,
                };
                if released {
                    *held = false;
                    return Ok(Outcome::Done);
                }
            }
            Sent::Stopped(outcome) => return Ok(outcome),
        }
    }
}

/// Takes the lease with the conversation's work, in this process's next lease batch. `None`: another
/// pass holds it.
async fn take(ctx: &Context, lease: &Lease) -> Result<Option<conversations::Leased>, sqlx::Error> {
    conversations::settle(|| ctx.writes.takes.call(*lease)).await
}

/// The account as last read, and when.
struct Account {
    credential: Credential,
    read_at: Instant,
}

impl Account {
    fn read_now(credential: Credential) -> Self {
        Self {
            credential,
            read_at: Instant::now(),
        }
    }

    /// Re-reads the account if the copy is older than [`ACCOUNT_FRESH_FOR`] (an AI call or a few sends
    /// ago): its status and throttle pause are shared by every worker and change under us.
    async fn refresh(&mut self, pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
        if self.read_at.elapsed() < ACCOUNT_FRESH_FOR {
            return Ok(());
        }
        if let Some(credential) = credentials::get(pool, self.credential.id).await? {
            self.credential = credential;
        }
        self.read_at = Instant::now();
        Ok(())
    }
}

/// The AI's input: the system prompt, the conversation so far, then exactly the messages this reply
/// answers (the same set `create_replies` marks answered, so nothing is answered twice or skipped).
fn prompt(
    system_prompt: &str,
    history: Vec<messages::HistoryLine>,
    answering: &[messages::Pending],
) -> Vec<ChatMessage> {
    let mut prompt = Vec::with_capacity(history.len() + answering.len() + 1);
    if !system_prompt.trim().is_empty() {
        prompt.push(ChatMessage {
            role: "system".into(),
            content: system_prompt.to_owned(),
        });
    }
    prompt.extend(history.into_iter().map(|line| {
        ChatMessage {
            role: if line.author == "customer" {
                "user"
            } else {
                "assistant"
            }
            .into(),
            content: line.text,
        }
    }));
    prompt.extend(answering.iter().filter_map(|p| {
        p.text.clone().map(|content| ChatMessage {
            role: "user".into(),
            content,
        })
    }));
    prompt
}

/// How far [`send_all`] got.
enum Sent {
    /// Every chunk went out (if there were any). The last one is not marked sent yet: the caller does it
    /// in the same round trip as its next step.
    All(Option<messages::ReplySent>),
    /// A chunk could not go out now; the outcome says why and what happens next.
    Stopped(Outcome),
}

/// Sends chunks in order; stops at the first that cannot go out now and says why.
async fn send_all(
    ctx: &Context,
    lease: &Lease,
    account: &mut Account,
    recipient: &str,
    chunks: &[messages::Unsent],
    clock: &mut Overhead,
) -> Result<Sent, sqlx::Error> {
    let mut last: Option<messages::ReplySent> = None;
    for (index, chunk) in chunks.iter().enumerate() {
        if let Some(previous) = last.take() {
            messages::mark_sent(&ctx.pool, previous.id, &previous.mid).await?;
        }
        let rest: Vec<Uuid> = chunks[index..].iter().map(|c| c.id).collect();
        account.refresh(&ctx.pool).await?;
        let credential = &account.credential;
        if !credential.can_send() {
            messages::set_status(&ctx.pool, &rest, "parked", Some("reauth_required")).await?;
            return Ok(Sent::Stopped(Outcome::Done));
        }
        if let Some(until) = credential.send_paused() {
            if chunk.claimed {
                // Claimed a moment ago, never attempted: waiting for an echo would only delay it.
                messages::set_status(&ctx.pool, &[chunk.id], "queued", None).await?;
            }
            let wait = (until - Utc::now()).to_std().unwrap_or_default();
            return Ok(Sent::Stopped(Outcome::Wait {
                after: wait,
                reason: "throttled",
            }));
        }
        if chunk.status == "sending" && !chunk.claimed {
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
                messages::set_status(&ctx.pool, &rest, "parked", Some("token_undecryptable")).await?;
                return Ok(Sent::Stopped(Outcome::Done));
            }
        };
        if !chunk.claimed {
            messages::mark_sending(&ctx.pool, chunk.id).await?;
        }
        let started = Instant::now();
        let result = clock
            .pause(
                ctx.graph
                    .send_text(credential.host(), &token, recipient, &chunk.text),
            )
            .await;
        ctx.metrics.send_duration.observe(started.elapsed().as_secs_f64());
        let error = match result {
            Ok(mid) => {
                last = Some(messages::ReplySent {
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
                messages::set_status(&ctx.pool, &[chunk.id], "queued", None).await?;
                Outcome::Failed {
                    reason: "send",
                    detail: error.detail,
                }
            }
            ErrorClass::Throttled { wait } => {
                messages::set_status(&ctx.pool, &[chunk.id], "queued", None).await?;
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
                messages::set_status(&ctx.pool, &rest, "parked", Some("reauth_required")).await?;
                Outcome::Done
            }
            ErrorClass::SentButError => Outcome::Wait {
                after: Duration::from_secs(5),
                reason: "awaiting_echo",
            },
            ErrorClass::OutsideWindow | ErrorClass::UserUnreachable | ErrorClass::Permanent => {
                messages::set_status(&ctx.pool, &rest, "failed", Some(error.class.label())).await?;
                Outcome::Done
            }
        }));
    }
    Ok(Sent::All(last))
}

/// Measures a reply pass's own time by subtracting the time spent waiting on the AI, Meta and debounce.
struct Overhead {
    started: Instant,
    excluded: Duration,
}

impl Overhead {
    fn start() -> Self {
        Self {
            started: Instant::now(),
            excluded: Duration::ZERO,
        }
    }

    async fn pause<T>(&mut self, future: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let value = future.await;
        self.excluded += started.elapsed();
        value
    }

    fn total(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.excluded)
    }
}
