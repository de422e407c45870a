//! The whole service on one machine, as separate processes: the sim (Meta and the AI, in this
//! process), one `ingest` and any number of `worker`s (the binaries next to this one), with a business
//! connected through the real "Connect Instagram" flow. The demo and the chaos suite both run on it.

use crate::webhook::WebhookClient;
use crate::{EchoMode, Sim, SimAccount, SimHandle, SimOptions};
use anyhow::Context;
use omnidm_shared::config::DatabaseConfig;
use omnidm_shared::crypto::generate_key_base64;
use omnidm_shared::topology::Topology;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// The app secret webhooks and echoes are signed with. LOCAL ONLY.
pub const SECRET: &str = "demo-app-secret";

/// The admin token of the local stack: printed so a newcomer can sign in to the integrations page.
/// LOCAL ONLY.
pub const ADMIN_TOKEN: &str = "demo-admin-token-change-me";

/// Where the local stack's services are and how it is shaped.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// PostgreSQL database (created if missing).
    pub database_url: String,
    /// RabbitMQ.
    pub amqp_url: String,
    /// Ingest's listen address.
    pub ingest_addr: String,
    /// Worker processes to start.
    pub workers: usize,
    /// Extra environment for ingest and workers (e.g. `REPLY_DEBOUNCE_MS`).
    pub env: Vec<(&'static str, String)>,
    /// `RUST_LOG` of the child processes.
    pub log: String,
}

/// A running local stack.
pub struct LocalStack {
    /// The sim, as Meta and the AI.
    pub sim: SimHandle,
    /// The connected business account.
    pub account: SimAccount,
    /// `http://<ingest_addr>`.
    pub ingest_base: String,
    /// Posts signed webhooks to ingest.
    pub webhook: WebhookClient,
    /// The connected customer.
    pub customer_id: String,
    env: Vec<(&'static str, String)>,
    /// The random queue prefix this stack made up (and deletes when it stops); `None` when the caller
    /// chose the prefix, whose queues are then not ours to delete.
    own_prefix: Option<String>,
    ingest: Child,
    /// The worker processes, in start order (killed ones removed).
    pub workers: Vec<Child>,
}

impl LocalStack {
    /// Starts everything and connects [`SimAccount::generated(1)`] through the OAuth flow.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let account = SimAccount::generated(1);
        let ingest_base = format!("http://{}", options.ingest_addr);
        let webhook_url = format!("{ingest_base}/api/webhooks/instagram");
        let sim_options = SimOptions {
            accounts: vec![account.clone()],
            oauth_accounts: Some(vec![account.clone()]),
            echo: EchoMode::AfterResponse,
            echo_webhook_url: Some(webhook_url.clone()),
            app_secret: Some(SECRET.into()),
            ..SimOptions::default()
        };
        // The app the sim plays is the one ingest and the workers are configured as: its echoes carry
        // that app id, as Meta's carry ours.
        let app_id = sim_options.app_id.clone();
        let sim = Sim::start(sim_options).await?;
        let database = DatabaseConfig {
            database_url: SecretString::from(options.database_url.clone()),
            database_max_connections: 2,
        };
        let pool = omnidm_shared::db::connect_and_migrate(&database)
            .await
            .context("Failed to prepare the database")?;
        forget_previous_run(&pool, &account).await?;
        pool.close().await;

        let prefix = format!("local_{}", &Uuid::new_v4().simple().to_string()[..8]);
        let own_prefix =
            (!options.env.iter().any(|(name, _)| *name == "QUEUE_PREFIX")).then(|| prefix.clone());
        let mut env = vec![
            ("DATABASE_URL", options.database_url.clone()),
            ("AMQP_URL", options.amqp_url.clone()),
            ("QUEUE_PREFIX", prefix),
            ("INSTAGRAM_APP_SECRET", SECRET.into()),
            ("INSTAGRAM_WEBHOOK_VERIFY_TOKEN", "demo-verify-token".into()),
            ("META_GRAPH_URL", sim.graph_url()),
            ("AI_BASE_URL", sim.ai_base_url()),
            ("ENCRYPTION_KEY", generate_key_base64()),
            ("INGEST_ADDR", options.ingest_addr.clone()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("INSTAGRAM_APP_ID", app_id),
            (
                "INSTAGRAM_REDIRECT_URI",
                format!("{ingest_base}/api/instagram/callback"),
            ),
            ("APP_URL", ingest_base.clone()),
            ("META_OAUTH_DIALOG_URL", sim.oauth_dialog_url()),
            ("WORKER_ADDR", "127.0.0.1:0".into()),
            ("RUST_LOG", options.log.clone()),
        ];
        for (name, value) in options.env {
            env.retain(|(n, _)| *n != name);
            env.push((name, value));
        }
        let ingest = spawn("ingest", &env)?;
        let mut stack = Self {
            sim,
            account,
            webhook: WebhookClient::new(webhook_url, SECRET),
            customer_id: String::new(),
            env,
            own_prefix,
            ingest,
            workers: Vec::new(),
            ingest_base,
        };
        for _ in 0..options.workers {
            stack.spawn_worker()?;
        }
        wait_until_ready(&stack.ingest_base).await?;
        stack.customer_id = connect_instagram(&stack.ingest_base).await?;
        Ok(stack)
    }

    /// The environment ingest and workers run with.
    pub fn env(&self) -> &[(&'static str, String)] {
        &self.env
    }

    /// Starts one more worker.
    pub fn spawn_worker(&mut self) -> anyhow::Result<()> {
        let child = spawn("worker", &self.env)?;
        self.workers.push(child);
        Ok(())
    }

    /// Starts one more worker serving its metrics on `addr` (so a benchmark can scrape it).
    pub fn spawn_worker_on(&mut self, addr: &str) -> anyhow::Result<()> {
        let mut env = self.env.clone();
        env.retain(|(name, _)| *name != "WORKER_ADDR");
        env.push(("WORKER_ADDR", addr.to_owned()));
        let child = spawn("worker", &env)?;
        self.workers.push(child);
        Ok(())
    }

    /// SIGKILLs the oldest worker (a crash: its unacked jobs are redelivered).
    pub async fn kill_worker(&mut self) -> anyhow::Result<()> {
        let mut child = self.workers.remove(0);
        child.start_kill()?;
        child.wait().await?;
        Ok(())
    }

    /// SIGTERMs the oldest worker and waits for its graceful drain.
    pub async fn stop_worker(&mut self) -> anyhow::Result<()> {
        let mut child = self.workers.remove(0);
        if let Some(pid) = child.id() {
            let status = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
            anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        }
        child.wait().await?;
        Ok(())
    }

    /// Stops every process (SIGKILL: the run is over) and deletes the run's queues: their random prefix
    /// is never used again, and a benchmark leaves thousands of unconsumed echo jobs behind.
    pub async fn shutdown(mut self) {
        for child in self.workers.iter_mut().chain(std::iter::once(&mut self.ingest)) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.sim.shutdown();
        if let Err(error) = self.delete_queues().await {
            tracing::warn!(%error, "cannot delete the local stack's queues");
        }
    }

    async fn delete_queues(&self) -> anyhow::Result<()> {
        let Some(prefix) = &self.own_prefix else {
            return Ok(());
        };
        let topology = Topology::new(prefix.clone());
        let amqp_url = self
            .env
            .iter()
            .find(|(name, _)| *name == "AMQP_URL")
            .map(|(_, value)| value.as_str())
            .context("AMQP_URL is not set")?;
        let connection = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        topology.delete(&channel).await?;
        connection.close(0, "local stack stopped".into()).await?;
        Ok(())
    }
}

fn spawn(binary: &str, env: &[(&str, String)]) -> anyhow::Result<Child> {
    let path: PathBuf = std::env::current_exe()?.with_file_name(binary);
    Command::new(&path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "Failed to start {} (build the workspace first: cargo build --workspace --bins)",
                path.display()
            )
        })
}

/// The account may be connected to a previous run's customer; one account belongs to one customer, so
/// the old connection goes (its conversations with it).
async fn forget_previous_run(pool: &sqlx::PgPool, account: &SimAccount) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM instagram_credentials WHERE account_id = $1")
        .bind(&account.ig_account_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Waits until ingest reports ready (broker connected) on `/readyz`.
async fn wait_until_ready(ingest: &str) -> anyhow::Result<()> {
    let http = crate::webhook::http_client();
    for _ in 0..150 {
        if let Ok(response) = http.get(format!("{ingest}/readyz")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("ingest did not become ready")
}

/// What an operator and a business owner do: create the customer, ask for the dialog URL, approve on
/// "Meta" (the sim), follow the redirect to our callback. Returns the customer id.
async fn connect_instagram(ingest: &str) -> anyhow::Result<String> {
    let api = crate::webhook::http_client();
    let mut created = None;
    // The admin API answers 503 until ingest's database is migrated.
    for _ in 0..100 {
        let response = api
            .post(format!("{ingest}/api/customers"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": "Demo Shoes", "systemPrompt": "You are the friendly assistant of Demo Shoes." }))
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
            created = Some(response.error_for_status()?.json::<Value>().await?);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let customer_id = created
        .and_then(|c| c["id"].as_str().map(str::to_owned))
        .context("ingest's admin API did not create the customer")?;
    let auth: Value = api
        .post(format!("{ingest}/api/instagram/auth/url"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "customerId": customer_id }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let auth_url = auth["authUrl"].as_str().context("no authUrl")?;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut url = auth_url.to_owned();
    // Dialog → callback → dashboard.
    for _ in 0..2 {
        let response = browser.get(&url).send().await?;
        url = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("expected a redirect in the OAuth flow")?
            .to_owned();
    }
    anyhow::ensure!(
        url.contains("success=instagram_connected"),
        "the OAuth flow ended with {url}"
    );
    Ok(customer_id)
}
