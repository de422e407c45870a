//! Resuming an account that came back (reconnected after `reauth_required`): what waited for it goes
//! out now. Parked replies inside Meta's 24-hour window are re-queued and sent; messages that arrived
//! while it was down are answered; anything older is marked `outside_window` instead of being sent
//! into an error.
//!
//! Triggered by a `resume` job (ingest publishes one after a reconnect) and by the token lifecycle
//! sweep, which catches a resume whose job was lost. Idempotent: the reply pass only sends what is
//! still queued, under the conversation's lease.

use crate::context::{Context, Outcome};
use crate::reply;
use crate::store::{credentials, outbound, work};
use futures_util::stream::{self, StreamExt};
use uuid::Uuid;

/// Conversations of one account answered at once during a resume; the rest queue behind them.
const PARALLEL_CONVERSATIONS: usize = 4;

/// Resumes one account. `Done` when every conversation is settled; otherwise the first conversation's
/// reason to come back later (the job is retried and resumes the rest).
#[tracing::instrument(name = "resume", skip(ctx))]
pub async fn process(ctx: &Context, credential_id: Uuid) -> Outcome {
    match run(ctx, credential_id).await {
        Ok(outcome) => outcome,
        Err(error) => error.into(),
    }
}

async fn run(ctx: &Context, credential_id: Uuid) -> Result<Outcome, sqlx::Error> {
    let Some(credential) = credentials::get(&ctx.pool, credential_id).await? else {
        return Ok(Outcome::Done);
    };
    if !credential.can_send() {
        // Still (or again) unusable: the next reconnect resumes it.
        return Ok(Outcome::Done);
    }
    let (requeued, expired) = outbound::unpark(&ctx.pool, credential_id).await?;
    if requeued + expired > 0 {
        tracing::info!(requeued, expired, "parked replies resumed");
        ctx.metrics
            .ignored
            .with_label_values(&["outside_window"])
            .inc_by(expired);
    }
    let pending = work::with_unanswered(&ctx.pool, credential_id).await?;
    let outcomes: Vec<Outcome> = stream::iter(pending)
        .map(|conversation_id| reply::run(ctx, conversation_id))
        .buffer_unordered(PARALLEL_CONVERSATIONS)
        .collect()
        .await;
    Ok(outcomes
        .into_iter()
        .find(|o| *o != Outcome::Done)
        .unwrap_or(Outcome::Done))
}
