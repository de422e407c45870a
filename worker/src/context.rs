//! What every job needs: clients, pool, keys, settings and metrics, built once per process.

use crate::ai::AiClient;
use crate::graph::GraphClient;
use crate::metrics::Metrics;
use crate::store::credentials::Routes;
pub use crate::store::Writes;
use omnidm_shared::crypto::Keyring;
use omnidm_shared::transitions::{self, Change, Transition};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Shared, read-only state of one worker process.
#[derive(Clone)]
pub struct Context {
    /// The database.
    pub pool: PgPool,
    /// Decrypts access tokens.
    pub keyring: Keyring,
    /// The AI provider.
    pub ai: AiClient,
    /// Meta's Send API.
    pub graph: GraphClient,
    /// Metric handles.
    pub metrics: Metrics,
    /// This process's identity (consumer tag, logs).
    pub worker_id: Uuid,
    /// Burst-merging window.
    pub debounce: Duration,
    /// How long the AI stays quiet after a human answered.
    pub human_pause: Duration,
    /// This Meta app's id, when configured: tells handover events and echoes that are ours.
    pub app_id: Option<String>,
    /// Messages of history for the AI.
    pub context_messages: u32,
    /// Most messages one AI reply is sent as (`MAX_REPLY_CHUNKS`).
    pub max_reply_chunks: usize,
    /// Most pending messages merged into one AI call (`AI_MAX_BURST_MESSAGES`).
    pub max_burst: usize,
    /// Most AI replies per conversation and minute (`AI_REPLIES_PER_MINUTE`).
    pub replies_per_minute: usize,
    /// Conversation lease length.
    pub lease: Duration,
    /// Routes events to their account, reusing answers for a moment.
    pub routes: Arc<Routes>,
    /// The writes every DM makes, batched across this process's jobs.
    pub writes: Writes,
}

impl Context {
    /// Moves a conversation by `cause` if its state allows ([`omnidm_shared::transitions::apply`]),
    /// counting and logging the change. Returns whether it changed.
    pub async fn change_state(
        &self,
        conversation_id: Uuid,
        cause: &Transition,
        change: Change<'_>,
    ) -> sqlx::Result<bool> {
        let changed = transitions::apply(&self.pool, conversation_id, cause, change).await?;
        if changed {
            self.metrics.transitions.with_label_values(&[cause.cause]).inc();
            tracing::info!(%conversation_id, cause = cause.cause, to = %cause.to, "conversation changed state");
        }
        Ok(changed)
    }
}

/// What became of a job. The consumer acts on it *after* it is committed: ack, delayed retry, or
/// dead-letter.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Finished (answered, recorded or deliberately ignored).
    Done,
    /// Not now, through no fault: come back after `after` (throttle pause, busy conversation, awaiting an
    /// echo). Does not use up the retry budget.
    Wait {
        /// How long to wait.
        after: Duration,
        /// Metric label.
        reason: &'static str,
    },
    /// Something failed (AI down, Send API error, database): retry with backoff, within the budget.
    Failed {
        /// Metric label.
        reason: &'static str,
        /// For the log and the dead-letter header.
        detail: String,
    },
    /// Can never succeed: park in the dead-letter queue at once.
    Dead {
        /// Metric label.
        reason: &'static str,
        /// For the log and the dead-letter header.
        detail: String,
    },
}

impl From<sqlx::Error> for Outcome {
    fn from(error: sqlx::Error) -> Self {
        Outcome::Failed {
            reason: "internal",
            detail: format!("database: {error}"),
        }
    }
}

/// How often a job has been tried, carried in AMQP headers across delayed retries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempt {
    /// Failed attempts so far.
    pub failures: u32,
    /// Waits so far (bounded only where waiting could go on forever, e.g. for an echo).
    pub waits: u32,
}
