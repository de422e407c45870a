//! Echoes: Meta tells us about every message the account sends. Ours mark our chunk delivered; one we did
//! not send means a person answered from the Instagram app (or the Page inbox), so the AI steps back for
//! a while (`human_reply` in `docs/conversation.md`). We never answer an echo (that is how bots end up
//! talking to themselves).

use crate::context::{Attempt, Context, Outcome};
use crate::store::conversations::{self, Change};
use crate::store::{credentials::Credential, echoes, inbound};
use chrono::{DateTime, Utc};
use omnidm_shared::job::JobV1;
use omnidm_shared::meta::event::{EchoMessage, Event};
use omnidm_shared::policy::MessageKind;
use omnidm_shared::states::{Author, Channel, MessageStatus};
use omnidm_shared::transitions;
use std::time::Duration;

/// How many times an unmatched echo waits for our in-flight send to finish before we call it a human's.
const MAX_ECHO_WAITS: u32 = 5;

/// Handles one echo.
#[allow(clippy::too_many_arguments)]
pub async fn handle(
    ctx: &Context,
    credential: &Credential,
    channel: Channel,
    event: &Event,
    echo: &EchoMessage,
    job: &JobV1<'_>,
    sent_at: DateTime<Utc>,
    attempt: Attempt,
) -> Result<Outcome, sqlx::Error> {
    ctx.metrics.ignored.with_label_values(&["echo"]).inc();
    // In an echo the customer is the recipient.
    let user = event.recipient.as_ref().map(|user| user.as_str());
    let ours = ctx
        .writes
        .recognise_echo(echoes::Echo {
            channel: channel.as_str().to_owned(),
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
    let existing = conversations::find(&ctx.pool, channel.as_str(), &credential.account_id, user).await?;
    if let Some(conversation_id) = existing {
        if attempt.waits < MAX_ECHO_WAITS && echoes::has_sending(&ctx.pool, conversation_id).await? {
            // The Send API call for one of our chunks has not returned yet: this may be its echo.
            return Ok(Outcome::Wait {
                after: Duration::from_secs(1),
                reason: "echo_unmatched",
            });
        }
    }
    if ctx.app_id.is_some() && echo.app_id == ctx.app_id {
        // Sent with our app's id, yet no chunk of ours matches (its row is gone, or it was a sender
        // action): never a person's reply, so it must not silence the bot.
        ctx.metrics
            .ignored
            .with_label_values(&["echo_ours_unmatched"])
            .inc();
        return Ok(Outcome::Done);
    }
    let text = echo.text.clone().unwrap_or_else(|| "[attachment]".into());
    let human = inbound::NewMessage {
        mid: &echo.mid,
        author: Author::Human,
        kind: MessageKind::Text,
        text: Some(&text),
        raw: job.event.get(),
        meta_timestamp: sent_at,
        status: MessageStatus::Delivered,
        status_reason: None,
    };
    let stored = ctx
        .writes
        .store_message(inbound::ToStore::new(credential, channel, user, &human))
        .await?;
    if stored.inserted {
        let until = Utc::now() + ctx.human_pause;
        let conversation_id = stored.conversation_id;
        let change = Change {
            paused_until: Some(until),
            ..Change::default()
        };
        if ctx
            .change_state(conversation_id, &transitions::HUMAN_REPLY, change)
            .await?
        {
            ctx.metrics.paused.inc();
        }
    }
    Ok(Outcome::Done)
}
