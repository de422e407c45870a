//! What every job needs: clients, pool, keys, settings and metrics, built once per process.

use crate::ai::AiClient;
use crate::graph::GraphClient;
use crate::metrics::Metrics;
use crate::store::batch::Batcher;
use crate::store::conversations::{self, Lease, Take};
use crate::store::credentials::Routes;
use crate::store::messages::{self, Echo, NewReply, ReplySent, Stored, ToStore, Unsent};
use omnidm_shared::crypto::Keyring;
use sqlx::PgPool;
use std::future::Future;
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
    /// Conversation lease length.
    pub lease: Duration,
    /// Routes events to their account, reusing answers for a moment.
    pub routes: Arc<Routes>,
    /// The writes every DM makes, batched across this process's jobs.
    pub writes: Writes,
}

/// The writes every DM makes, each coalesced across the process's concurrent jobs into one statement
/// (see [`crate::store::batch`]).
#[derive(Clone)]
pub struct Writes {
    /// Takes conversations' leases and reads their work.
    pub takes: Batcher<Lease, Take>,
    /// Stores inbound (and human-sent) messages.
    pub stores: Batcher<ToStore, Stored>,
    /// Stores AI answers under their leases.
    pub replies: Batcher<NewReply, Option<Vec<Unsent>>>,
    /// Ends replies: last chunk sent, lease given back if idle.
    pub sent: Batcher<ReplySent, bool>,
    /// Recognises our echoes.
    pub echoes: Batcher<Echo, bool>,
}

impl Writes {
    /// Starts one batcher per write; leases are taken with `history` messages of context.
    pub fn start(pool: &PgPool, metrics: &Metrics, history: u32) -> Self {
        Self {
            takes: batched(pool, metrics, "lease", move |pool, leases| async move {
                conversations::take_many(&pool, leases, history).await
            }),
            stores: batched(pool, metrics, "store_message", |pool, rows| async move {
                messages::store_many(&pool, rows).await
            }),
            replies: batched(pool, metrics, "reply", |pool, rows| async move {
                messages::create_replies(&pool, rows).await
            }),
            sent: batched(pool, metrics, "reply_sent", |pool, rows| async move {
                messages::mark_sent_and_release_many(&pool, rows).await
            }),
            echoes: batched(pool, metrics, "echo", |pool, rows| async move {
                messages::mark_echoes_delivered(&pool, rows).await
            }),
        }
    }
}

/// A batcher running `write` on the pool, counted under `label`.
fn batched<I, O, W, F>(pool: &PgPool, metrics: &Metrics, label: &str, write: W) -> Batcher<I, O>
where
    I: Clone + Send + 'static,
    O: Send + 'static,
    W: Fn(PgPool, Vec<I>) -> F + Send + Sync + 'static,
    F: Future<Output = sqlx::Result<Vec<O>>> + Send + 'static,
{
    let pool = pool.clone();
    Batcher::start(
        move |rows| write(pool.clone(), rows),
        metrics.write_batches(label),
    )
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
