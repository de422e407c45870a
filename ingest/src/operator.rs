//! What a person of the business does in a conversation through the API: answer the customer, pause
//! the bot, resume it. The rules (Meta's 24-hour and 7-day windows, who may speak in which state) are
//! here; sending is a worker's job, like every other message we send.

use crate::api::ApiError;
use crate::db::Database;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::store::conversations::{self, ForOperator, Message};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use omnidm_shared::chunk;
use omnidm_shared::config::MetaLogin;
use omnidm_shared::crypto::{token_associated_data, Keyring};
use omnidm_shared::meta::graph::GraphApi;
use omnidm_shared::meta::handover::ThreadControl;
use omnidm_shared::meta::window::{self, Window};
use omnidm_shared::states::{ConversationState, CredentialStatus};
use omnidm_shared::transitions::{self, Change};
use std::time::Duration;
use uuid::Uuid;

/// Longest reply a person may send at once (it goes out in chunks of at most 1000 bytes).
pub const MAX_REPLY_CHARS: usize = 4_000;

/// Everything an operator's action needs.
#[derive(Clone)]
pub struct Operator {
    /// Ingest's database.
    pub db: Database,
    /// Meta's Graph API (taking a thread back on resume).
    pub graph: GraphApi,
    /// Decrypts the account's token for that.
    pub keyring: Keyring,
    /// Tells a worker there is a reply to send.
    pub publisher: Publisher,
    /// How long the bot is quiet after a person's reply (`HUMAN_PAUSE_MINUTES`).
    pub human_pause: Duration,
    /// Metric handles.
    pub metrics: Metrics,
}

/// What became of a resume.
#[derive(Debug)]
pub struct Resumed {
    /// The state now (`bot`).
    pub state: ConversationState,
    /// Whether we took the thread back from another app: `None` when nobody else had it.
    pub thread_taken: Option<bool>,
}

impl Operator {
    async fn conversation(&self, id: Uuid) -> Result<ForOperator, ApiError> {
        conversations::for_operator(self.db.pool()?, id)
            .await?
            .ok_or_else(|| ApiError::not_found("conversation"))
    }

    /// Stores a person's answer to go out through the Send API and pauses the bot, or says (409) why
    /// Meta's policy forbids sending now.
    pub async fn reply(&self, id: Uuid, text: &str) -> Result<Vec<Message>, ApiError> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > MAX_REPLY_CHARS {
            return Err(ApiError::bad_request(
                "invalid_text",
                format!("text must be 1 to {MAX_REPLY_CHARS} characters"),
            ));
        }
        let conversation = self.conversation(id).await?;
        if let Err(refusal) = may_send(&conversation, Utc::now()) {
            self.metrics
                .operator_replies
                .with_label_values(&[refusal.code])
                .inc();
            return Err(refusal);
        }
        let chunks = chunk::split(text, chunk::MAX_CHUNK_BYTES);
        let until = Utc::now() + self.human_pause;
        let pool = self.db.pool()?;
        let stored = conversations::queue_operator_reply(pool, &conversation, &chunks, until).await?;
        if let Err(error) = self.publisher.publish_send(id).await {
            // No worker was told: take the reply back rather than leave it waiting for an unrelated event.
            let ids: Vec<Uuid> = stored.iter().map(|m| m.id).collect();
            let withdrawn = conversations::withdraw_queued(pool, &ids).await?;
            tracing::warn!(%error, withdrawn, "cannot queue an operator reply for sending");
            if withdrawn as usize == ids.len() {
                self.metrics
                    .operator_replies
                    .with_label_values(&["unavailable"])
                    .inc();
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue_unavailable",
                    "the message could not be queued for sending; nothing was sent, retry shortly",
                ));
            }
        }
        self.metrics.operator_replies.with_label_values(&["queued"]).inc();
        self.metrics
            .transitions
            .with_label_values(&[transitions::OPERATOR_REPLY.cause])
            .inc();
        tracing::info!(conversation_id = %id, chunks = stored.len(), "operator reply queued");
        Ok(stored)
    }

    /// Pauses the bot until `until` (`None`: until resumed).
    pub async fn pause(
        &self,
        id: Uuid,
        until: Option<DateTime<Utc>>,
    ) -> Result<(ConversationState, Option<DateTime<Utc>>), ApiError> {
        let conversation = self.conversation(id).await?;
        let change = Change {
            paused_until: until,
            ..Change::default()
        };
        let pool = self.db.pool()?;
        match conversations::change_state(pool, id, &transitions::OPERATOR_PAUSE, change).await? {
            Some(now) => {
                self.metrics
                    .transitions
                    .with_label_values(&[transitions::OPERATOR_PAUSE.cause])
                    .inc();
                Ok(now)
            }
            None => Err(ApiError::new(
                StatusCode::CONFLICT,
                "thread_elsewhere",
                format!(
                    "the conversation is {}: another app owns the thread; resume it first",
                    conversation.state
                ),
            )),
        }
    }

    /// Gives the conversation back to the bot, taking the thread back from another app (the Page inbox
    /// after an escalation) where the account is Page-linked.
    pub async fn resume(&self, id: Uuid) -> Result<Resumed, ApiError> {
        let conversation = self.conversation(id).await?;
        let pool = self.db.pool()?;
        let thread_taken = match conversation.state {
            ConversationState::Escalated | ConversationState::Elsewhere => {
                self.take_thread(&conversation).await
            }
            ConversationState::Bot | ConversationState::Paused => None,
        };
        let state = conversations::change_state(pool, id, &transitions::RESUME, Change::default())
            .await?
            .map_or(ConversationState::Bot, |(state, _)| state);
        self.metrics
            .transitions
            .with_label_values(&[transitions::RESUME.cause])
            .inc();
        Ok(Resumed { state, thread_taken })
    }

    /// `take_thread_control` for a Page-linked account (`None`: not one, nothing to take).
    async fn take_thread(&self, conversation: &ForOperator) -> Option<bool> {
        if MetaLogin::from_stored(&conversation.login) != MetaLogin::Facebook
            || conversation.page_id.is_none()
        {
            return None;
        }
        let stored = conversation.access_token_enc.as_deref()?;
        let token = match self.keyring.decrypt(
            stored,
            token_associated_data(conversation.credential_id).as_bytes(),
        ) {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(%error, "cannot decrypt the account's token to take the thread back");
                return Some(false);
            }
        };
        let taken = self
            .graph
            .thread_control(
                &token,
                &conversation.external_user_id,
                ThreadControl::Take,
                "resumed by a person",
            )
            .await;
        if let Err(error) = &taken {
            tracing::warn!(%error, "could not take the thread back; the bot resumes once it is passed back");
        }
        Some(taken.is_ok())
    }
}

/// Whether a person may send in this conversation now (Meta's rules), or the 409 that says why not.
fn may_send(conversation: &ForOperator, now: DateTime<Utc>) -> Result<(), ApiError> {
    let conflict = |code, message: &str| Err(ApiError::new(StatusCode::CONFLICT, code, message));
    match conversation.credential_status {
        CredentialStatus::Disconnected => {
            return conflict(
                "account_disconnected",
                "the account is disconnected; connect it again to send",
            )
        }
        CredentialStatus::ReauthRequired => {
            return conflict(
                "account_needs_reconnect",
                "Meta no longer accepts the account's token; reconnect it to send",
            )
        }
        CredentialStatus::Active | CredentialStatus::Expiring => {}
    }
    if conversation.state == ConversationState::Elsewhere {
        return conflict(
            "thread_elsewhere",
            "another app owns this thread (Handover Protocol); answer there, or resume the conversation to take it back",
        );
    }
    match window::at(conversation.last_inbound_at, now) {
        Window::Standard | Window::HumanAgent => Ok(()),
        Window::Closed => conflict(
            "outside_window",
            "Meta allows a person to answer only within 7 days of the customer's last message",
        ),
    }
}
