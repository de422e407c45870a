//! `sim demo`: the whole pipeline on one machine, for a newcomer's first look.
//!
//! Starts the simulator (as Meta and the AI), migrates the database, connects a demo tenant (its token
//! encrypted exactly as the OAuth flow stores it), runs `ingest` and two `worker` processes (the binaries
//! next to this one), then plays a customer writing a few DMs and prints the conversation as it happens.

use crate::webhook::{payload, WebhookClient};
use crate::{EchoMode, Sim, SimAccount, SimOptions};
use anyhow::Context;
use omnidm_shared::config::DatabaseConfig;
use omnidm_shared::crypto::{generate_key_base64, Key, Keyring};
use secrecy::SecretString;
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// Where the demo's services find each other.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// PostgreSQL database for the demo (created if missing).
    pub database_url: String,
    /// RabbitMQ.
    pub amqp_url: String,
    /// Ingest's listen address.
    pub ingest_addr: String,
    /// Keep running after the scripted DMs (until Ctrl-C), so you can send your own.
    pub keep_running: bool,
}

const SECRET: &str = "demo-app-secret";

/// Runs the demo.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let account = SimAccount::generated(1);
    let ingest_url = format!("http://{}/api/webhooks/instagram", options.ingest_addr);
    let sim = Sim::start(SimOptions {
        accounts: vec![account.clone()],
        echo: EchoMode::AfterResponse,
        echo_webhook_url: Some(ingest_url.clone()),
        app_secret: Some(SECRET.into()),
        ..SimOptions::default()
    })
    .await?;
    let key = generate_key_base64();
    let database = DatabaseConfig {
        database_url: SecretString::from(options.database_url.clone()),
        database_max_connections: 2,
    };
    let pool = omnidm_shared::db::connect_and_migrate(&database)
        .await
        .context("Failed to prepare the database")?;
    let prefix = format!("demo_{}", &Uuid::new_v4().simple().to_string()[..8]);
    seed(&pool, &account, &key).await?;

    let env = vec![
        ("DATABASE_URL", options.database_url.clone()),
        ("AMQP_URL", options.amqp_url.clone()),
        ("QUEUE_PREFIX", prefix),
        ("INSTAGRAM_APP_SECRET", SECRET.into()),
        ("INSTAGRAM_WEBHOOK_VERIFY_TOKEN", "demo-verify-token".into()),
        ("META_GRAPH_URL", sim.graph_url()),
        ("AI_BASE_URL", sim.ai_base_url()),
        ("ENCRYPTION_KEY", key),
        ("INGEST_ADDR", options.ingest_addr.clone()),
        ("WORKER_ADDR", "127.0.0.1:0".into()),
        ("REPLY_DEBOUNCE_MS", "800".into()),
        ("RUST_LOG", "warn".into()),
    ];
    let mut children = vec![
        spawn("ingest", &env)?,
        spawn("worker", &env)?,
        spawn("worker", &env)?,
    ];
    let client = WebhookClient::new(ingest_url, SECRET);
    println!(
        "omnidm demo: sim at {}, ingest at http://{}",
        sim.base_url(),
        options.ingest_addr
    );
    wait_until_accepting(&client, &account).await?;

    let customer = "17841499999999999";
    let script = [
        ("hi!", 0),
        ("do you have the blue sneakers", 150),
        ("in size 42?", 300),
        ("thanks :)", 6_000),
    ];
    let started = chrono::Utc::now().timestamp_millis();
    for (i, (text, at)) in script.iter().enumerate() {
        tokio::time::sleep_until(
            tokio::time::Instant::now() + Duration::from_millis(*at as u64).saturating_sub(elapsed(started)),
        )
        .await;
        println!("customer → {text}");
        let body = payload::text_message(
            &account.ig_account_id,
            customer,
            &format!("demo-mid-{i}-{started}"),
            text,
            chrono::Utc::now().timestamp_millis(),
        );
        client.post(body).await?;
    }
    let mut shown = 0;
    for _ in 0..100 {
        let sent = sim.sent_messages();
        for message in &sent[shown..] {
            println!("AI       → {}", message.text);
        }
        shown = sent.len();
        if shown >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{shown} replies sent for 4 customer messages (a burst of three answered once). Metrics: http://{}/metrics", options.ingest_addr);
    if options.keep_running {
        println!("Running until Ctrl-C. Send your own: sim send-text --secret {SECRET} --account-id {} --text 'hello'", account.ig_account_id);
        omnidm_shared::ops::shutdown_signal().await;
    }
    for child in &mut children {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    Ok(())
}

fn elapsed(started_ms: i64) -> Duration {
    Duration::from_millis((chrono::Utc::now().timestamp_millis() - started_ms).max(0) as u64)
}

async fn seed(pool: &sqlx::PgPool, account: &SimAccount, key: &str) -> anyhow::Result<()> {
    let keyring = Keyring::new(Key::from_base64(key)?, vec![]);
    sqlx::query("DELETE FROM instagram_credentials WHERE account_id = $1")
        .bind(&account.ig_account_id)
        .execute(pool)
        .await?;
    let customer_id = Uuid::new_v4();
    sqlx::query("INSERT INTO customers (id, name, system_prompt) VALUES ($1, 'Demo Shoes', 'You are the friendly assistant of Demo Shoes.')")
        .bind(customer_id)
        .execute(pool)
        .await?;
    let credential_id = Uuid::new_v4();
    let aad = omnidm_shared::crypto::token_associated_data(credential_id);
    let token = keyring.encrypt(&SecretString::from(account.page_token.clone()), aad.as_bytes());
    sqlx::query(
        "INSERT INTO instagram_credentials (id, customer_id, account_id, page_id, username, access_token_enc, token_key_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(credential_id)
    .bind(customer_id)
    .bind(&account.ig_account_id)
    .bind(&account.page_id)
    .bind(&account.username)
    .bind(&token)
    .bind(keyring.current_key_id())
    .execute(pool)
    .await?;
    Ok(())
}

fn spawn(binary: &str, env: &[(&str, String)]) -> anyhow::Result<Child> {
    let path: PathBuf = std::env::current_exe()?.with_file_name(binary);
    Command::new(&path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "Failed to start {} (build the workspace first: cargo build --release)",
                path.display()
            )
        })
}

async fn wait_until_accepting(client: &WebhookClient, account: &SimAccount) -> anyhow::Result<()> {
    let probe = payload::text_message(&account.ig_account_id, "0", "demo-probe", "probe", 1);
    for _ in 0..100 {
        if client.post(probe.clone()).await.is_ok_and(|s| s.as_u16() == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("ingest did not become ready")
}
