//! The AI handed a conversation to a person: record it, notify the business, and give the thread to the
//! Page inbox.

use crate::context::Context;
use crate::store::conversations;
use crate::store::credentials::Credential;
use chrono::Utc;
use omnidm_shared::meta::handover::ThreadControl;
use omnidm_shared::meta::PAGE_INBOX_APP_ID;
use omnidm_shared::states::Channel;
use omnidm_shared::transitions;
use uuid::Uuid;

/// What an escalation needs to know of the conversation.
pub(super) struct Escalating<'a> {
    pub(super) conversation_id: Uuid,
    pub(super) credential: &'a Credential,
    pub(super) recipient: &'a str,
    pub(super) channel: Channel,
}

/// The AI handed the conversation to a person: the state, the audit trail and the business's
/// notification, together ([`conversations::escalate`]); the handoff message is already stored to go.
pub(super) async fn escalate(ctx: &Context, at: &Escalating<'_>, reason: &str) -> Result<(), sqlx::Error> {
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
pub(super) async fn pass_to_inbox(ctx: &Context, credential: &Credential, recipient: &str, reason: &str) {
    if credential.handover_page().is_none() {
        return;
    }
    let outcome = match credential.access_token(&ctx.keyring) {
        Ok(token) => ctx
            .graph
            .api()
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
