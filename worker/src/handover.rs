//! Meta's Handover Protocol (Messenger `messaging_handovers`, Instagram `messaging_handover`): which app
//! owns a conversation's thread. We keep the owner per conversation, never send into a thread another
//! app owns, take the thread back when it is passed to us, and pass it to an app that asks for it when
//! the business allows that (the default).
//!
//! Meta delivers `pass_thread_control` to the app that receives the thread, `take_thread_control` to
//! the app that lost it, and `request_thread_control` to the thread's owner.

use crate::context::{Context, Outcome};
use crate::store::conversations::{self, Change};
use crate::store::credentials::Credential;
use omnidm_shared::meta::event::{Event, EventKind, HandoverAction};
use omnidm_shared::meta::handover::ThreadControl;
use omnidm_shared::states::Channel;
use omnidm_shared::transitions::{self, Transition};
use uuid::Uuid;

/// Handles one handover event.
pub async fn handle(
    ctx: &Context,
    credential: &Credential,
    channel: Channel,
    event: &Event,
) -> Result<Outcome, sqlx::Error> {
    let EventKind::Handover {
        action,
        new_owner_app_id,
        requested_owner_app_id,
        ..
    } = &event.kind
    else {
        return Ok(Outcome::Done);
    };
    // In a handover event the customer is the sender, the Page or account the recipient.
    let Some(user) = event.sender.as_ref().map(|s| s.as_str()) else {
        return Ok(count(ctx, *action, "no_sender"));
    };
    let conversation_id = conversations::ensure(&ctx.pool, credential, channel, user).await?;
    let ours = |app: &Option<String>| match (&ctx.app_id, app) {
        (Some(ours), Some(app)) => ours == app,
        // Meta delivers a pass to the app that receives the thread: without our id, it is us.
        (None, _) | (_, None) => true,
    };
    match action {
        HandoverAction::Pass if ours(new_owner_app_id) => {
            ctx.change_state(
                conversation_id,
                &transitions::THREAD_PASSED_TO_US,
                Change::default(),
            )
            .await?;
            Ok(count(ctx, *action, "to_us"))
        }
        HandoverAction::Pass | HandoverAction::Take => {
            thread_is_elsewhere(
                ctx,
                conversation_id,
                &transitions::THREAD_TO_OTHER_APP,
                new_owner_app_id.as_deref(),
            )
            .await?;
            Ok(count(ctx, *action, "to_other_app"))
        }
        HandoverAction::Request => {
            let Some(requester) = requested_owner_app_id.as_deref() else {
                return Ok(count(ctx, *action, "no_requester"));
            };
            if !credential.pass_thread_on_request || credential.handover_page().is_none() {
                return Ok(count(ctx, *action, "declined"));
            }
            let token = match credential.access_token(&ctx.keyring) {
                Ok(token) => token,
                Err(error) => {
                    tracing::error!(%error, "cannot decrypt the account's token to pass the thread");
                    return Ok(count(ctx, *action, "error"));
                }
            };
            let passed = ctx
                .graph
                .api()
                .thread_control(
                    &token,
                    user,
                    ThreadControl::Pass {
                        target_app_id: requester,
                    },
                    "requested",
                )
                .await;
            match passed {
                Ok(_) => {
                    thread_is_elsewhere(
                        ctx,
                        conversation_id,
                        &transitions::THREAD_TO_OTHER_APP,
                        Some(requester),
                    )
                    .await?;
                    Ok(count(ctx, *action, "passed"))
                }
                Err(error) => {
                    tracing::warn!(%error, "could not pass the thread to the app that asked for it");
                    ctx.metrics
                        .handover
                        .with_label_values(&["request", "error"])
                        .inc();
                    Ok(Outcome::Failed {
                        reason: "handover",
                        detail: error.to_string(),
                    })
                }
            }
        }
    }
}

/// Moves the conversation to `elsewhere` (another app owns the thread), by `cause`.
pub async fn thread_is_elsewhere(
    ctx: &Context,
    conversation_id: Uuid,
    cause: &Transition,
    owner: Option<&str>,
) -> Result<(), sqlx::Error> {
    let change = Change {
        thread_owner: owner,
        ..Change::default()
    };
    ctx.change_state(conversation_id, cause, change).await.map(drop)
}

fn count(ctx: &Context, action: HandoverAction, outcome: &str) -> Outcome {
    let action = match action {
        HandoverAction::Pass => "pass",
        HandoverAction::Take => "take",
        HandoverAction::Request => "request",
    };
    ctx.metrics.handover.with_label_values(&[action, outcome]).inc();
    Outcome::Done
}
