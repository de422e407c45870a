//! The load generator: signed, unique single-event text webhooks driven at a target as fast as asked.
//!
//! Two modes:
//! * **closed loop** ([`LoadMode::Closed`]): `concurrency` tasks each send, await the answer, repeat. Finds
//!   the throughput ceiling, but a slow target slows the generator down with it.
//! * **open loop** ([`LoadMode::Open`]): requests are scheduled at fixed intervals whatever the target does,
//!   and latency is measured from the *intended* send time, so a stall shows up in the percentiles
//!   instead of being hidden (coordinated omission). `concurrency` caps requests in flight (connections).
//!
//! Every request has its own `mid` and one of `senders` rotating sender ids, as real traffic would, so
//! the target's deduplication and per-conversation logic see realistic keys.

pub mod baseline;
pub mod broker;
mod http;
mod report;

pub use report::{LatencySummary, LoadReport};

use crate::webhook;
use http::{Connections, Target};
use report::Recorder;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadMode {
    /// Each of `concurrency` tasks sends, waits for the answer, and sends again.
    Closed,
    /// Requests start at `rate` per second on a fixed schedule.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

/// A load run's parameters.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The webhook endpoint.
    pub url: String,
    /// The app secret bodies are signed with.
    pub secret: String,
    /// The Instagram account the DMs are addressed to (`entry.id`).
    pub account_id: String,
    /// How many distinct senders rotate.
    pub senders: u64,
    /// Pacing.
    pub mode: LoadMode,
    /// Closed loop: tasks. Open loop: maximum requests in flight. Also the connection pool size.
    pub concurrency: usize,
    /// Length of the measured period.
    pub duration: Duration,
    /// Period before it whose requests are sent but not counted (connections open, caches warm).
    pub warmup: Duration,
    /// Per-request timeout; a request that takes longer counts as a transport error.
    pub timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080/api/webhooks/instagram".to_string(),
            secret: String::new(),
            account_id: crate::SimAccount::generated(1).ig_account_id,
            senders: 1000,
            mode: LoadMode::Closed,
            concurrency: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// An option is out of range; fix the command line.
    #[error("invalid load options: {0}")]
    InvalidOptions(&'static str),
    /// The target URL cannot be used.
    #[error("invalid target: {0}")]
    Target(String),
}

/// Builds unique, signed request bodies.
struct Generator {
    connections: Connections,
    secret: Vec<u8>,
    account_id: String,
    senders: u64,
    /// Distinguishes this run's mids from an earlier run's against the same database.
    run_id: String,
    next: AtomicU64,
}

impl Generator {
    /// Sends the next request; the HTTP status, or `None` on a transport error.
    async fn send(&self) -> Option<u16> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let sender = (1_000_000_000_000_000 + seq % self.senders).to_string();
        let mid = format!("m_load_{}_{seq}", self.run_id);
        let text = format!("load test message {seq}");
        let now_ms = chrono::Utc::now().timestamp_millis();
        let body = webhook::text_message(&self.account_id, &sender, &mid, &text, now_ms);
        let signature = omnidm_shared::signature::sign(&self.secret, &body);
        self.connections.post(body, signature).await
    }
}

/// Runs the load described by `options` and reports on the measured period.
pub async fn run(options: &LoadOptions) -> Result<LoadReport, LoadError> {
    if options.concurrency == 0 {
        return Err(LoadError::InvalidOptions("concurrency must be at least 1"));
    }
    if options.senders == 0 {
        return Err(LoadError::InvalidOptions("senders must be at least 1"));
    }
    if let LoadMode::Open { rate } = options.mode {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(LoadError::InvalidOptions("rate must be a positive number"));
        }
    }
    let target = Target::resolve(&options.url).await.map_err(LoadError::Target)?;
    let generator = Arc::new(Generator {
        connections: Connections::new(target, options.timeout),
        secret: options.secret.as_bytes().to_vec(),
        account_id: options.account_id.clone(),
        senders: options.senders,
        run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        next: AtomicU64::new(0),
    });
    let start = Instant::now();
    let window = Window {
        measure_from: start + options.warmup,
        end: start + options.warmup + options.duration,
    };
    let recorder = match options.mode {
        LoadMode::Closed => {
            closed_loop(options.concurrency, window, move || {
                let generator = generator.clone();
                async move { generator.send().await }
            })
            .await
        }
        LoadMode::Open { rate } => open_loop(generator, options.concurrency, rate, start, window).await,
    };
    Ok(recorder.into_report(options.duration))
}

/// Requests starting in `[measure_from, end)` are counted; none start at or after `end`.
#[derive(Debug, Clone, Copy)]
struct Window {
    measure_from: Instant,
    end: Instant,
}

/// `concurrency` tasks each call `send` (a status, or `None` on a transport error), await it and repeat.
async fn closed_loop<F, Fut>(concurrency: usize, window: Window, send: F) -> Recorder
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Option<u16>> + Send,
{
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let send = send.clone();
            tokio::spawn(async move {
                let mut recorder = Recorder::default();
                loop {
                    let started = Instant::now();
                    if started >= window.end {
                        return recorder;
                    }
                    let status = send().await;
                    if started >= window.measure_from {
                        recorder.record(status, started.elapsed());
                    }
                }
            })
        })
        .collect();
    let mut total = Recorder::default();
    for worker in workers {
        match worker.await {
            Ok(recorder) => total.merge(recorder),
            Err(error) => tracing::error!(%error, "load worker failed"),
        }
    }
    total
}

async fn open_loop(
    generator: Arc<Generator>,
    concurrency: usize,
    rate: f64,
    start: Instant,
    window: Window,
) -> Recorder {
    let in_flight = Arc::new(Semaphore::new(concurrency));
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let nanos_per_request = 1e9 / rate;
    for i in 0u64.. {
        let intended = start + Duration::from_nanos((i as f64 * nanos_per_request) as u64);
        if intended >= window.end {
            break;
        }
        if intended > Instant::now() {
            tokio::time::sleep_until(intended).await;
        }
        // Waiting for a permit delays the send, not the intended time: the wait counts as latency.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (generator, recorder) = (generator.clone(), recorder.clone());
        tokio::spawn(async move {
            let status = generator.send().await;
            if intended >= window.measure_from {
                crate::state::lock(&recorder).record(status, intended.elapsed());
            }
            drop(permit);
        });
    }
    // Every permit back means every request has finished.
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    let _drained = in_flight.acquire_many(all).await;
    let mut total = Recorder::default();
    total.merge(std::mem::take(&mut *crate::state::lock(&recorder)));
    total
}

/// Parses `10s`, `500ms`, `2m`, `1.5s` or a bare number of seconds, for command-line options.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 10s or 500ms)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("not a duration: {text:?} ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }
}
