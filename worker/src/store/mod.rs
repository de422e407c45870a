//! Everything the worker reads and writes in PostgreSQL, cut by a message's life: [`inbound`] (customer
//! messages stored), [`work`] (what a conversation still needs), [`lease`] (one reply pass at a time),
//! [`outbound`] (our chunks sent), [`echoes`] (what Meta tells us we sent), [`conversations`] (who
//! speaks), [`credentials`] (accounts), [`reconcile`] (checks against Meta), [`locks`] (fleet-wide
//! jobs) and [`notifications`] (to businesses). Dependencies point one
//! way: work ← lease ← outbound. Each function is one short statement or transaction: no connection is
//! held across an AI or Send API call. The writes every DM makes go through [`Writes`], which batches
//! them across the process's concurrent jobs ([`batch`]) behind plain per-row calls.

pub mod batch;
pub mod conversations;
pub mod credentials;
pub mod echoes;
pub mod inbound;
pub mod lease;
pub mod locks;
pub mod notifications;
pub mod outbound;
pub mod reconcile;
pub mod work;

use crate::metrics::Metrics;
use batch::Batcher;
use echoes::Echo;
use inbound::{Stored, ToStore};
use lease::{Lease, Leased, Take};
use outbound::{NewReply, ReplySent};
use sqlx::PgPool;
use std::future::Future;
use work::Unsent;

/// One trivial round trip: whether PostgreSQL answers (the readiness probe).
pub async fn ping(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop)
}

/// The writes every DM makes, each coalesced across the process's concurrent jobs into one statement.
/// Callers see one row in, one result out.
#[derive(Clone)]
pub struct Writes {
    takes: Batcher<Lease, Take>,
    stores: Batcher<ToStore, Stored>,
    replies: Batcher<NewReply, Option<Vec<Unsent>>>,
    sent: Batcher<ReplySent, bool>,
    echoes: Batcher<Echo, bool>,
}

impl Writes {
    /// Starts one batcher per write; leases are taken with `history` messages of context.
    pub fn start(pool: &PgPool, metrics: &Metrics, history: u32) -> Self {
        Self {
            takes: batched(pool, metrics, "lease", move |pool, leases| async move {
                lease::take_many(&pool, leases, history).await
            }),
            stores: batched(pool, metrics, "store_message", |pool, rows| async move {
                inbound::store_many(&pool, rows).await
            }),
            replies: batched(pool, metrics, "reply", |pool, rows| async move {
                outbound::create_replies(&pool, rows).await
            }),
            sent: batched(pool, metrics, "reply_sent", |pool, rows| async move {
                outbound::mark_sent_and_release_many(&pool, rows).await
            }),
            echoes: batched(pool, metrics, "echo", |pool, rows| async move {
                echoes::mark_echoes_delivered(&pool, rows).await
            }),
        }
    }

    /// [`inbound::store`], batched.
    pub async fn store_message(&self, row: ToStore) -> sqlx::Result<Stored> {
        self.stores.call(row).await
    }

    /// Takes the lease with the conversation's work ([`lease::take_many`], batched; settles races).
    /// `None`: another pass holds it.
    pub async fn take(&self, lease: Lease) -> sqlx::Result<Option<Leased>> {
        lease::settle(|| self.takes.call(lease)).await
    }

    /// [`outbound::create_reply`], batched. `None`: the lease was lost.
    pub async fn create_reply(&self, reply: NewReply) -> sqlx::Result<Option<Vec<Unsent>>> {
        self.replies.call(reply).await
    }

    /// [`outbound::mark_sent_and_release_if_idle`], batched: whether the lease was given back.
    pub async fn finish_reply(&self, sent: ReplySent) -> sqlx::Result<bool> {
        self.sent.call(sent).await
    }

    /// [`echoes::mark_echo_delivered`], batched: whether the echo was ours.
    pub async fn recognise_echo(&self, echo: Echo) -> sqlx::Result<bool> {
        self.echoes.call(echo).await
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
