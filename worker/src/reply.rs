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

use crate::ai::{AiError, Answer, ChatMessage};
use crate::chunk;
use crate::context::{Context, Outcome};
use crate::graph::{Messaging, ThreadControl};
use crate::store::conversations::{self, Change, Lease};
use crate::store::credentials::{self, Credential};
use crate::store::messages;
use chrono::{DateTime, Utc};
use omnidm_shared::meta::graph_error::ErrorClass;
use omnidm_shared::meta::window::{self, Window};
use omnidm_shared::meta::PAGE_INBOX_APP_ID;
use omnidm_shared::policy::Decision;
use omnidm_shared::states::{Author, Channel, MessageStatus};
use omnidm_shared::transitions;
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
        let state = leased.state_now();
        let last_inbound = leased.last_inbound_at;
        let recipient = leased.external_user_id.clone();
        let mut account = Account::read_now(leased.credential.clone());
        let messages::Work {
            pending,
            unsent,
            history,
        } = leased.work;
        let sending = Sending {
            lease,
            recipient: &recipient,
            conversation_id: lease.conversation_id,
            last_inbound,
        };
        if !unsent.is_empty() {
            match send_all(ctx, &sending, &mut account, &unsent, clock).await? {
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
        if let Some(reason) = state.quiet_reason() {
            // A person or another app has the conversation: stored, not answered.
            let ids: Vec<Uuid> = pending.iter().map(|p| p.id).collect();
            messages::ignore_pending(&ctx.pool, &ids, reason).await?;
            ctx.metrics
                .ignored
                .with_label_values(&[reason])
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
        let plan = Plan::of(&account.credential, &pending);
        if !plan.recorded.is_empty() {
            // The business changed its policy since these were stored.
            messages::ignore_pending(&ctx.pool, &plan.recorded, "policy").await?;
        }
        if plan.answered.is_empty() {
            continue;
        }
        let mut texts = plan.fixed.clone();
        let mut handoff = None;
        if !plan.for_ai.is_empty() {
            let prompt = prompt(&account.credential.system_prompt, history, &plan.for_ai);
            let started = Instant::now();
            let answer = clock.pause(ctx.ai.complete(&prompt)).await;
            ctx.metrics.ai_duration.observe(started.elapsed().as_secs_f64());
            match answer {
                Ok(Answer::Text(answer)) => texts.push(answer),
                Ok(Answer::Handoff { reason }) => {
                    // The person's words, not the AI's: nothing the AI wrote goes out.
                    texts = vec![account.credential.handoff_message().to_owned()];
                    handoff = Some(reason);
                }
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
            }
        }
        let chunks: Vec<String> = texts
            .iter()
            .flat_map(|text| chunk::split(text, chunk::MAX_CHUNK_BYTES))
            .collect();
        account.refresh(&ctx.pool).await?;
        let claim_first = account.credential.can_send() && account.credential.send_paused().is_none();
        let reply = messages::NewReply {
            lease: *lease,
            answers: plan.answered.clone(),
            chunks,
            claim_first,
        };
        let Some(unsent) = ctx.writes.replies.call(reply).await? else {
            // Our lease expired during a very slow AI call and another pass took over: let it answer.
            *held = false;
            return Ok(busy());
        };
        ctx.metrics.replies.inc();
        if let Some(reason) = &handoff {
            escalate(
                ctx,
                &Escalating {
                    conversation_id: lease.conversation_id,
                    credential: &account.credential,
                    recipient: &recipient,
                    channel: leased.channel,
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

/// What the reply pass does with a burst of pending messages, by the business's reply policy.
struct Plan<'a> {
    /// Messages the AI answers, in order.
    for_ai: Vec<&'a messages::Pending>,
    /// Fixed texts to send first (one per distinct text, in order).
    fixed: Vec<String>,
    /// Every message this reply answers (AI and fixed).
    answered: Vec<Uuid>,
    /// Messages the policy now says to record only.
    recorded: Vec<Uuid>,
}

impl<'a> Plan<'a> {
    fn of(credential: &Credential, pending: &'a [messages::Pending]) -> Self {
        let mut plan = Plan {
            for_ai: Vec::new(),
            fixed: Vec::new(),
            answered: Vec::new(),
            recorded: Vec::new(),
        };
        for message in pending {
            match credential.reply_policy.decide(message.kind) {
                Decision::Ai => {
                    plan.for_ai.push(message);
                    plan.answered.push(message.id);
                }
                Decision::Reply(text) => {
                    if !plan.fixed.contains(&text) {
                        plan.fixed.push(text);
                    }
                    plan.answered.push(message.id);
                }
                Decision::Record => plan.recorded.push(message.id),
            }
        }
        plan
    }
}

/// What an escalation needs to know of the conversation.
struct Escalating<'a> {
    conversation_id: Uuid,
    credential: &'a Credential,
    recipient: &'a str,
    channel: Channel,
}

/// The AI handed the conversation to a person: the state, the audit trail and the business's
/// notification, together ([`conversations::escalate`]); the handoff message is already stored to go.
async fn escalate(ctx: &Context, at: &Escalating<'_>, reason: &str) -> Result<(), sqlx::Error> {
    let notification = serde_json::json!({
        "event": "conversation.escalated",
        "id": Uuid::now_v7(),
        "createdAt": Utc::now(),
        "customerId": at.credential.customer_id,
        "conversationId": at.conversation_id,
        "channel": at.channel,
        "accountId": at.credential.account_id,
        "externalUserId": at.recipient,
        "reason": reason,
    });
    if conversations::escalate(
        &ctx.pool,
        at.conversation_id,
        at.credential,
        reason,
        &notification,
    )
    .await?
    {
        ctx.metrics.escalations.inc();
        ctx.metrics
            .transitions
            .with_label_values(&[transitions::HANDOFF.cause])
            .inc();
        tracing::info!(conversation_id = %at.conversation_id, reason, "conversation handed to a person");
    }
    Ok(())
}

/// Passes an escalated conversation's thread to the Page inbox, where a person of the business sees it
/// (Page-linked accounts only). Best effort: the conversation is escalated either way, and a person can
/// still answer from the Instagram app or through the operator API.
async fn pass_to_inbox(ctx: &Context, credential: &Credential, recipient: &str, reason: &str) {
    if credential.handover_page().is_none() {
        return;
    }
    let outcome = match credential.access_token(&ctx.keyring) {
        Ok(token) => ctx
            .graph
            .thread_control(
                &token,
                recipient,
                ThreadControl::Pass {
                    target_app_id: PAGE_INBOX_APP_ID,
                },
                reason,
            )
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    let label = if outcome.is_ok() { "ok" } else { "error" };
    ctx.metrics
        .handover
        .with_label_values(&["pass_to_inbox", label])
        .inc();
    if let Err(error) = outcome {
        tracing::warn!(%error, "could not pass the escalated thread to the Page inbox");
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
    answering: &[&messages::Pending],
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
            role: if line.author == Author::Customer {
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

/// Who [`send_all`] sends to, for which pass.
struct Sending<'a> {
    lease: &'a Lease,
    recipient: &'a str,
    conversation_id: Uuid,
    /// Meta's time of the customer's last message: a person's chunk goes under the window it falls in.
    last_inbound: Option<DateTime<Utc>>,
}

/// Sends chunks in order; stops at the first that cannot go out now and says why.
async fn send_all(
    ctx: &Context,
    sending: &Sending<'_>,
    account: &mut Account,
    chunks: &[messages::Unsent],
    clock: &mut Overhead,
) -> Result<Sent, sqlx::Error> {
    let (lease, recipient) = (sending.lease, sending.recipient);
    let mut last: Option<messages::ReplySent> = None;
    for (index, chunk) in chunks.iter().enumerate() {
        if let Some(previous) = last.take() {
            messages::mark_sent(&ctx.pool, previous.id, &previous.mid).await?;
        }
        let rest: Vec<Uuid> = chunks[index..].iter().map(|c| c.id).collect();
        account.refresh(&ctx.pool).await?;
        let credential = &account.credential;
        if !credential.can_send() {
            messages::set_status(&ctx.pool, &rest, MessageStatus::Parked, Some("reauth_required")).await?;
            return Ok(Sent::Stopped(Outcome::Done));
        }
        if let Some(until) = credential.send_paused() {
            if chunk.claimed {
                // Claimed a moment ago, never attempted: waiting for an echo would only delay it.
                messages::set_status(&ctx.pool, &[chunk.id], MessageStatus::Queued, None).await?;
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
                messages::set_status(
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
                messages::set_status(
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
            messages::mark_sending(&ctx.pool, chunk.id).await?;
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
                messages::set_status(&ctx.pool, &[chunk.id], MessageStatus::Queued, None).await?;
                Outcome::Failed {
                    reason: "send",
                    detail: error.detail,
                }
            }
            ErrorClass::Throttled { wait } => {
                messages::set_status(&ctx.pool, &[chunk.id], MessageStatus::Queued, None).await?;
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
                messages::set_status(&ctx.pool, &rest, MessageStatus::Parked, Some("reauth_required"))
                    .await?;
                Outcome::Done
            }
            ErrorClass::ThreadElsewhere => {
                // Not a failure to retry: another app owns the thread, and it is quiet time for us.
                messages::set_status(&ctx.pool, &rest, MessageStatus::Failed, Some("thread_elsewhere"))
                    .await?;
                let moved = conversations::transition(
                    &ctx.pool,
                    sending.conversation_id,
                    &transitions::SEND_REFUSED,
                    Change::default(),
                )
                .await?;
                if moved {
                    ctx.metrics
                        .transitions
                        .with_label_values(&[transitions::SEND_REFUSED.cause])
                        .inc();
                }
                Outcome::Done
            }
            ErrorClass::SentButError => Outcome::Wait {
                after: Duration::from_secs(5),
                reason: "awaiting_echo",
            },
            ErrorClass::OutsideWindow | ErrorClass::UserUnreachable | ErrorClass::Permanent => {
                messages::set_status(&ctx.pool, &rest, MessageStatus::Failed, Some(error.class.label()))
                    .await?;
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
