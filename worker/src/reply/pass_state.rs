//! What a reply pass keeps while it runs: the account as last read, and its own time.

use crate::store::credentials::{self, Credential};
use std::time::{Duration, Instant};

/// How long a pass trusts the account it read (status, throttle pause, token) before re-reading it
/// between chunks: long enough that a reply costs no extra round trip per chunk, short enough that a
/// throttle or a dead token another worker just recorded is honoured at once in practice (and Meta would
/// tell us again anyway).
const ACCOUNT_FRESH_FOR: Duration = Duration::from_secs(1);

/// The account as last read, and when.
pub(super) struct Account {
    pub(super) credential: Credential,
    read_at: Instant,
}

impl Account {
    pub(super) fn read_now(credential: Credential) -> Self {
        Self {
            credential,
            read_at: Instant::now(),
        }
    }

    /// Re-reads the account if the copy is older than [`ACCOUNT_FRESH_FOR`] (an AI call or a few sends
    /// ago): its status and throttle pause are shared by every worker and change under us.
    pub(super) async fn refresh(&mut self, pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
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

/// Measures a reply pass's own time by subtracting the time spent waiting on the AI, Meta and debounce.
pub(super) struct Overhead {
    started: Instant,
    excluded: Duration,
}

impl Overhead {
    pub(super) fn start() -> Self {
        Self {
            started: Instant::now(),
            excluded: Duration::ZERO,
        }
    }

    pub(super) async fn pause<T>(&mut self, future: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let value = future.await;
        self.excluded += started.elapsed();
        value
    }

    pub(super) fn total(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.excluded)
    }
}
