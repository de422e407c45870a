//! `sim`: the command line over the `omnidm_sim` library.
//!
//! `sim serve` runs the fakes for the demo or a manual test, `sim load` benchmarks the webhook endpoint,
//! and `sim send-text` delivers one signed DM. Everything of substance lives in the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use omnidm_sim::load::{self, parse_duration, LoadMode, LoadOptions};
use omnidm_sim::webhook::{self, WebhookClient};
use omnidm_sim::{EchoMode, Sim, SimOptions};
use std::net::SocketAddr;
use std::time::Duration;

/// A stand-in for Meta and the AI provider on loopback, and a webhook load generator.
#[derive(Debug, Parser)]
#[command(name = "sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Graph API, OAuth dialog, AI and control API until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Drive signed text webhooks at an endpoint and report throughput and latency.
    Load(LoadArgs),
    /// Publish to RabbitMQ exactly as ingest does, with no HTTP in front: the broker's own ceiling.
    BenchBroker(BenchBrokerArgs),
    /// Serve the simplest correct ingest (verify, one confirmed publish, 200): the yardstick the ingest
    /// benchmark compares ours to, run in the same hour with the same `load`.
    BaselineIngest(BaselineIngestArgs),
    /// Post one signed text DM webhook and print the status.
    SendText(SendTextArgs),
    /// Run the whole pipeline (sim, ingest, two workers) and play a customer writing DMs.
    Demo(DemoArgs),
    /// Create the database if missing and apply the migrations, then exit.
    Migrate(MigrateArgs),
    /// The reliability suite: DMs through the whole pipeline while brokers, databases, workers, the AI
    /// and Meta fail on a schedule; prints the ledger and fails unless nothing was lost or doubled.
    /// Restarts the local RabbitMQ and PostgreSQL: run it alone.
    Chaos(ChaosArgs),
    /// Reply throughput of 1, 2, 4… workers (release binaries next to this one), for BENCHMARKS.md.
    BenchWorkers(BenchArgs),
}

/// Where RabbitMQ is, for every command that starts a stack or publishes.
#[derive(Debug, Args)]
struct BrokerArgs {
    /// RabbitMQ.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// PostgreSQL database of the run.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/omnidm_bench"
    )]
    database_url: String,
    #[command(flatten)]
    broker: BrokerArgs,
    /// Ingest's listen address.
    #[arg(long, default_value = "127.0.0.1:18182")]
    ingest_addr: String,
    /// Worker counts, comma-separated.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    workers: Vec<usize>,
    /// Offered DMs per second.
    #[arg(long, default_value_t = 1500.0)]
    rate: f64,
    /// Measured period, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// WORKER_CONCURRENCY of each worker.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long the simulated AI takes to answer, e.g. 1s (0s: at once).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    ai_latency: Duration,
}

#[derive(Debug, Args)]
struct ChaosArgs {
    /// PostgreSQL database of the run.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/omnidm_chaos"
    )]
    database_url: String,
    #[command(flatten)]
    broker: BrokerArgs,
    /// Ingest's listen address.
    #[arg(long, default_value = "127.0.0.1:8181")]
    ingest_addr: String,
    /// Conversations writing at once.
    #[arg(long, default_value_t = 40)]
    conversations: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// How long DMs are sent, e.g. 90s (the soak: 30m).
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    traffic: Duration,
    /// How long everything may take to be answered afterwards.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    settle: Duration,
    /// How long a restarted service stays down.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    outage: Duration,
    /// Stops RabbitMQ.
    #[arg(long, default_value = "rabbitmqctl -q stop_app")]
    broker_stop: String,
    /// Starts RabbitMQ again.
    #[arg(long, default_value = "rabbitmqctl -q start_app")]
    broker_start: String,
    /// Stops PostgreSQL.
    #[arg(
        long,
        default_value = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n1) main stop -m fast"
    )]
    database_stop: String,
    /// Starts PostgreSQL again.
    #[arg(
        long,
        default_value = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n1) main start"
    )]
    database_start: String,
    /// Seed of the traffic's shape.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// PostgreSQL database for the demo.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/omnidm_demo"
    )]
    database_url: String,
    #[command(flatten)]
    broker: BrokerArgs,
    /// Ingest's listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    ingest_addr: String,
    /// Exit after the scripted conversation instead of running until Ctrl-C.
    #[arg(long)]
    once: bool,
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/omnidm"
    )]
    database_url: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Listen address.
    #[arg(long, env = "SIM_ADDR", default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
    /// Latency of every chat completion, in milliseconds.
    #[arg(long, env = "SIM_AI_LATENCY_MS", default_value_t = 0)]
    ai_latency_ms: u64,
    /// Post an echo webhook for every message sent, to this URL (after answering the Send API).
    #[arg(long, env = "SIM_ECHO_WEBHOOK_URL", requires = "app_secret")]
    echo_webhook_url: Option<String>,
    /// The app secret echoes are signed with (the first of a comma-separated list).
    #[arg(long, env = "INSTAGRAM_APP_SECRET", hide_env_values = true, value_parser = first_secret)]
    app_secret: Option<String>,
    /// Keep counters only, no per-call records (for benchmarks).
    #[arg(long, env = "SIM_NO_RECORD")]
    no_record: bool,
}

#[derive(Debug, Args)]
struct BenchBrokerArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Queue-name prefix of the run's own queues (purged at the end).
    #[arg(long, default_value = "bench-broker")]
    queue_prefix: String,
    /// Publishes awaiting their confirm at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Confirm-mode channels (ingest's AMQP_PUBLISH_CHANNELS).
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Message size in bytes (a one-DM job is about 600).
    #[arg(long, default_value_t = 600)]
    bytes: usize,
    /// Measured period, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured period before it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
}

#[derive(Debug, Args)]
struct BaselineIngestArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18081")]
    addr: String,
    /// Its quorum queue (deleted when it stops).
    #[arg(long, default_value = "bench-baseline.jobs")]
    queue: String,
    /// The app secret webhooks are signed with.
    #[arg(long, default_value = "bench")]
    secret: String,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// The webhook endpoint.
    #[arg(
        long,
        env = "SIM_LOAD_URL",
        default_value = "http://127.0.0.1:8080/api/webhooks/instagram"
    )]
    url: String,
    /// The app secret bodies are signed with (the first of a comma-separated list).
    #[arg(long, env = "INSTAGRAM_APP_SECRET", hide_env_values = true, value_parser = first_secret)]
    secret: String,
    /// The Instagram account id the DMs are addressed to.
    #[arg(long, env = "SIM_ACCOUNT_ID", default_value_t = omnidm_sim::SimAccount::generated(1).ig_account_id)]
    account_id: String,
    /// Distinct senders to rotate through.
    #[arg(long, env = "SIM_LOAD_SENDERS", default_value_t = 1000)]
    senders: u64,
    /// Closed loop: concurrent tasks. Open loop: maximum requests in flight.
    #[arg(long, env = "SIM_LOAD_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// Open loop at this many requests per second (closed loop when absent).
    #[arg(long, env = "SIM_LOAD_RATE")]
    rate: Option<f64>,
    /// Measured period, e.g. 10s.
    #[arg(long, env = "SIM_LOAD_DURATION", default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured period before it.
    #[arg(long, env = "SIM_LOAD_WARMUP", default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Per-request timeout.
    #[arg(long, env = "SIM_LOAD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct SendTextArgs {
    /// The webhook endpoint.
    #[arg(
        long,
        env = "SIM_WEBHOOK_URL",
        default_value = "http://127.0.0.1:8080/api/webhooks/instagram"
    )]
    url: String,
    /// The app secret the body is signed with (the first of a comma-separated list).
    #[arg(long, env = "INSTAGRAM_APP_SECRET", hide_env_values = true, value_parser = first_secret)]
    secret: String,
    /// The Instagram account id (`entry.id`).
    #[arg(long, env = "SIM_ACCOUNT_ID", default_value_t = omnidm_sim::SimAccount::generated(1).ig_account_id)]
    account_id: String,
    /// The sender's IGSID.
    #[arg(long, env = "SIM_USER_ID", default_value = "1000000000000001")]
    user_id: String,
    /// The message text.
    #[arg(long)]
    text: String,
}

/// `INSTAGRAM_APP_SECRET` may list several secrets for rotation; the first one signs.
fn first_secret(value: &str) -> Result<String, String> {
    value
        .split(',')
        .next()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "empty secret".to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Load(args) => run_load(args).await,
        Command::BenchBroker(args) => {
            let report = load::broker::run(&load::broker::BrokerLoadOptions {
                amqp_url: args.broker.amqp_url,
                queue_prefix: args.queue_prefix,
                concurrency: args.concurrency,
                channels: args.channels,
                payload_bytes: args.bytes,
                duration: args.duration,
                warmup: args.warmup,
            })
            .await?;
            println!("{report}");
            Ok(())
        }
        Command::BaselineIngest(args) => {
            let listener = tokio::net::TcpListener::bind(&args.addr).await?;
            eprintln!(
                "baseline ingest on http://{}/api/webhooks/instagram",
                listener.local_addr()?
            );
            let options = load::baseline::BaselineOptions {
                amqp_url: args.broker.amqp_url,
                queue: args.queue,
                secret: args.secret,
            };
            load::baseline::serve(&options, listener, omnidm_shared::ops::shutdown_signal()).await
        }
        Command::SendText(args) => send_text(args).await,
        Command::Demo(args) => {
            omnidm_sim::demo::run(omnidm_sim::demo::DemoOptions {
                database_url: args.database_url,
                amqp_url: args.broker.amqp_url,
                ingest_addr: args.ingest_addr,
                keep_running: !args.once,
            })
            .await
        }
        Command::Chaos(args) => {
            let ledger = omnidm_sim::chaos::run(omnidm_sim::chaos::ChaosOptions {
                database_url: args.database_url,
                amqp_url: args.broker.amqp_url,
                ingest_addr: args.ingest_addr,
                conversations: args.conversations,
                workers: args.workers,
                traffic: args.traffic,
                settle: args.settle,
                outage: args.outage,
                broker_stop: args.broker_stop,
                broker_start: args.broker_start,
                database_stop: args.database_stop,
                database_start: args.database_start,
                seed: args.seed,
            })
            .await?;
            println!("{ledger}");
            anyhow::ensure!(ledger.passed(), "the chaos suite lost or doubled replies");
            Ok(())
        }
        Command::BenchWorkers(args) => {
            let results = omnidm_sim::bench::run(omnidm_sim::bench::BenchOptions {
                database_url: args.database_url,
                amqp_url: args.broker.amqp_url,
                ingest_addr: args.ingest_addr,
                workers: args.workers,
                rate: args.rate,
                duration: args.duration,
                concurrency: args.concurrency,
                ai_latency: args.ai_latency,
            })
            .await?;
            println!("| workers | DMs accepted/s | replies/s | backlog drained after the load | reply-pass overhead p50 |");
            println!("|---|---|---|---|---|");
            for result in results {
                println!("{result}");
            }
            Ok(())
        }
        Command::Migrate(args) => {
            let config = omnidm_shared::config::DatabaseConfig {
                database_url: args.database_url.into(),
                database_max_connections: 2,
            };
            omnidm_shared::db::connect_and_migrate(&config)
                .await?
                .close()
                .await;
            println!("database migrated");
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let options = SimOptions {
        addr: args.addr,
        record: !args.no_record,
        ai_latency: Duration::from_millis(args.ai_latency_ms),
        echo: if args.echo_webhook_url.is_some() {
            EchoMode::AfterResponse
        } else {
            EchoMode::Off
        },
        echo_webhook_url: args.echo_webhook_url,
        app_secret: args.app_secret,
        ..SimOptions::default()
    };
    let sim = Sim::start(options).await?;
    println!("sim listening on {}", sim.base_url());
    println!("META_GRAPH_URL={}", sim.graph_url());
    println!("AI_BASE_URL={}", sim.ai_base_url());
    println!("META_OAUTH_DIALOG_URL={}", sim.oauth_dialog_url());
    for account in sim.accounts() {
        println!(
            "account: page {} instagram {} (@{}) page token {}",
            account.page_id, account.ig_account_id, account.username, account.page_token
        );
    }
    shutdown_signal().await?;
    sim.shutdown();
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("Failed to listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("Failed to listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("Failed to listen for Ctrl-C")?;
    Ok(())
}

async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let options = LoadOptions {
        url: args.url,
        secret: args.secret,
        account_id: args.account_id,
        senders: args.senders,
        mode: args.rate.map_or(LoadMode::Closed, |rate| LoadMode::Open { rate }),
        concurrency: args.concurrency,
        duration: args.duration,
        warmup: args.warmup,
        timeout: args.timeout,
    };
    let report = load::run(&options).await.context("Failed to run the load")?;
    println!("{report}");
    Ok(())
}

async fn send_text(args: SendTextArgs) -> anyhow::Result<()> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mid = format!("m_cli_{}", uuid::Uuid::new_v4().simple());
    let body = webhook::text_message(&args.account_id, &args.user_id, &mid, &args.text, now_ms);
    let status = WebhookClient::new(&args.url, args.secret.as_bytes())
        .post(body)
        .await
        .with_context(|| format!("Failed to post to {}", args.url))?;
    println!("{status} (mid {mid})");
    Ok(())
}
