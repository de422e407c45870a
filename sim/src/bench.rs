//! `sim bench-workers`: reply throughput of the worker fleet. The local stack (release binaries next to
//! this one) gets DMs from many distinct customers at a fixed rate (each its own conversation, so no burst
//! merging), the AI answers at once, and the sim counts the replies Meta would have received. Reported per
//! worker count: replies per second over the measured window, how long the backlog took to drain, and
//! the workers' own time per reply pass (`worker_reply_overhead_seconds`, excluding AI and Send API waits).

use crate::load::{self, LoadMode, LoadOptions};
use crate::stack::{LocalStack, StackOptions, SECRET};
use sqlx::Connection;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// PostgreSQL database of the run (created if missing).
    pub database_url: String,
    /// RabbitMQ.
    pub amqp_url: String,
    /// Ingest's listen address.
    pub ingest_addr: String,
    /// Worker counts to measure, one run each.
    pub workers: Vec<usize>,
    /// Offered DMs per second (open loop).
    pub rate: f64,
    /// Measured period.
    pub duration: Duration,
    /// Jobs one worker handles at once.
    pub concurrency: usize,
    /// The simulated AI's answer time: zero measures the workers' own cost; a second shows how
    /// throughput grows with concurrency × workers when the AI is the wait.
    pub ai_latency: Duration,
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Worker processes.
    pub workers: usize,
    /// DMs ingest accepted during the measured period, per second.
    pub offered_per_sec: f64,
    /// Replies sent during the measured period, per second.
    pub replies_per_sec: f64,
    /// From the end of the load until every accepted DM was answered.
    pub drain: Duration,
    /// Upper bound of the bucket holding the median reply-pass overhead, across workers.
    pub overhead_p50: Option<f64>,
}

impl std::fmt::Display for BenchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "| {} | {:.0} | {:.0} | {:.1} s | {} |",
            self.workers,
            self.offered_per_sec,
            self.replies_per_sec,
            self.drain.as_secs_f64(),
            self.overhead_p50
                .map_or_else(|| "n/a".to_owned(), |p| format!("≤ {:.1} ms", p * 1000.0))
        )
    }
}

/// Runs one measurement per worker count.
pub async fn run(options: BenchOptions) -> anyhow::Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    for &workers in &options.workers {
        results.push(run_one(&options, workers).await?);
    }
    Ok(results)
}

async fn run_one(options: &BenchOptions, workers: usize) -> anyhow::Result<BenchResult> {
    let mut stack = LocalStack::start(StackOptions {
        database_url: options.database_url.clone(),
        amqp_url: options.amqp_url.clone(),
        ingest_addr: options.ingest_addr.clone(),
        workers: 0,
        env: vec![
            ("REPLY_DEBOUNCE_MS", "0".into()),
            ("WORKER_CONCURRENCY", options.concurrency.to_string()),
            ("RECONCILE_INTERVAL_SECONDS", "3600".into()),
        ],
        log: "error".into(),
    })
    .await?;
    stack.sim.set_ai_latency(options.ai_latency);
    let ports: Vec<String> = (0..workers)
        .map(|i| format!("127.0.0.1:{}", 19_190 + i))
        .collect();
    for addr in &ports {
        stack.spawn_worker_on(addr)?;
    }
    // Let every worker connect and declare its consumer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let warmup = Duration::from_secs(2);
    let before = stack.sim.counters().sent;
    // The database starts empty and grows by thousands of rows a second, far faster than autovacuum
    // looks (once a minute): without statistics the workers' generic plans would be the ones for
    // empty tables. A database in service has them; give them to this one after the warm-up, as
    // autovacuum would.
    let analyze = tokio::spawn({
        let url = options.database_url.clone();
        async move {
            tokio::time::sleep(warmup).await;
            let mut db = sqlx::PgConnection::connect(&url).await?;
            sqlx::query("ANALYZE").execute(&mut db).await?;
            anyhow::Ok(())
        }
    });
    let started = chrono::Utc::now();
    let report = load::run(&LoadOptions {
        url: format!("{}/api/webhooks/instagram", stack.ingest_base),
        secret: SECRET.into(),
        account_id: stack.account.ig_account_id.clone(),
        senders: 1_000_000,
        mode: LoadMode::Open { rate: options.rate },
        concurrency: 512,
        duration: options.duration,
        warmup,
        timeout: Duration::from_secs(10),
    })
    .await?;
    let load_over = Instant::now();
    analyze.await??;
    let window_start = started + chrono::Duration::from_std(warmup)?;
    let window_end = window_start + chrono::Duration::from_std(options.duration)?;
    let accepted_total = report.accepted();
    // Drain: until every DM of the run (warm-up included) has its reply, or a minute passes.
    let expected = before + accepted_total + warmup_estimate(options, warmup);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = stack.sim.counters().sent;
    let mut progressed = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = stack.sim.counters().sent;
        if now >= expected {
            break;
        }
        if now != last {
            last = now;
            progressed = Instant::now();
        } else if progressed.elapsed() > Duration::from_secs(3) {
            break; // Nothing more is coming (some warm-up DMs were refused, say).
        }
    }
    let drain = progressed.saturating_duration_since(load_over);
    let in_window = stack
        .sim
        .sent_messages()
        .iter()
        .filter(|m| m.received_at >= window_start && m.received_at < window_end)
        .count();
    let overhead_p50 = overhead_median(&ports).await;
    stack.shutdown().await;
    Ok(BenchResult {
        workers,
        offered_per_sec: report.events_per_sec,
        replies_per_sec: in_window as f64 / options.duration.as_secs_f64(),
        drain,
        overhead_p50,
    })
}

/// DMs sent during the warm-up (accepted, not counted in the report).
fn warmup_estimate(options: &BenchOptions, warmup: Duration) -> u64 {
    (options.rate * warmup.as_secs_f64()) as u64
}

/// The median of `worker_reply_overhead_seconds` across workers, as the upper bound of its bucket.
async fn overhead_median(addrs: &[String]) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for addr in addrs {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        for line in text
            .lines()
            .filter(|l| l.starts_with("worker_reply_overhead_seconds_bucket"))
        {
            let le = line.split("le=\"").nth(1)?.split('"').next()?;
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
            match buckets.iter_mut().find(|(l, _)| *l == le) {
                Some(bucket) => bucket.1 += count,
                None => buckets.push((le, count)),
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= total / 2.0)
        .map(|(le, _)| *le)
}
