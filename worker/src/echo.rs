//! Echoes: Meta tells us about every message the account sends. Ours mark our chunk delivered; one we did
//! not send means a human answered from the Instagram app, so the AI steps back for a while. We never
//! answer an echo (that is how bots end up talking to themselves).

use crate::context::{Attempt, Context, Outcome};
use crate::store::{conversations, credentials::Credential, messages};
use chrono::{DateTime, Utc};
use omnidm_shared::job::JobV1;
use omnidm_shared::meta::event::{EchoMessage, Event};
use std::time::Duration;

/// How many times an unmatched echo waits for our in-flight send to finish before we call it a human's.
const MAX_ECHO_WAITS: u32 = 5;

/// Handles one echo.
pub async fn handle(
    ctx: &Context,
    credential: &Credential,
    event: &Event,
    echo: &EchoMessage,
    job: &JobV1<'_>,
    sent_at: DateTime<Utc>,
    attempt: Attempt,
) -> Result<Outcome, sqlx::Error> {
    ctx.metrics.ignored.with_label_values(&["echo"]).inc();
    let channel = credential.channel.as_str();
    // In an echo the customer is the recipient.
    let user = event.recipient.as_ref().map(|user| user.as_str());
    let ours = ctx
        .writes
        .echoes
        .call(messages::Echo {
            channel: channel.to_owned(),
            account_id: credential.account_id.clone(),
            user: user.map(str::to_owned),
            mid: echo.mid.clone(),
            text: echo.text.clone(),
        })
        .await?;
    if ours {
        return Ok(Outcome::Done);
    }
    let Some(user) = user else {
        return Ok(Outcome::Done);
    };
    // Our chunk may be mid-send in a conversation that exists; with no conversation, nothing is ours.
    let existing = conversations::find(&ctx.pool, channel, &credential.account_id, user).await?;
    if let Some(conversation_id) = existing {
        if attempt.waits < MAX_ECHO_WAITS && messages::has_sending(&ctx.pool, conversation_id).await? {
            // The Send API call for one of our chunks has not returned yet: this may be its echo.
            return Ok(Outcome::Wait {
                after: Duration::from_secs(1),
                reason: "echo_unmatched",
            });
        }
    }
    let text = echo.text.clone().unwrap_or_else(|| "[attachment]".into());
    let human = messages::NewMessage {
        mid: &echo.mid,
        author: "human",
        kind: "message",
        text: Some(&text),
        raw: job.event.get(),
        meta_timestamp: sent_at,
        status: "delivered",
        status_reason: None,
    };
    let stored = ctx
        .writes
        .stores
        .call(messages::ToStore::new(credential, user, &human))
        .await?;
    if stored.inserted {
        let until = Utc::now() + ctx.human_pause;
        let conversation_id = stored.conversation_id;
        conversations::pause_ai(&ctx.pool, conversation_id, until).await?;
        ctx.metrics.paused.inc();
        tracing::info!(%conversation_id, %until, "a human answered from the Instagram app; AI paused");
    }
    Ok(Outcome::Done)
}
