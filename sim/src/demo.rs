//! `sim demo`: the whole pipeline on one machine, for a newcomer's first look.
//!
//! Starts the local stack (the sim as Meta and the AI, `ingest` and two `worker` processes, a demo
//! business connected through the real "Connect Instagram" flow), then plays a customer writing a few
//! DMs and prints the conversation as it happens.

use crate::stack::{LocalStack, StackOptions, ADMIN_TOKEN, SECRET};
use crate::webhook::payload;
use std::time::Duration;

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

/// Runs the demo.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let stack = LocalStack::start(StackOptions {
        database_url: options.database_url.clone(),
        amqp_url: options.amqp_url.clone(),
        ingest_addr: options.ingest_addr.clone(),
        workers: 2,
        env: vec![("REPLY_DEBOUNCE_MS", "800".into())],
        log: "warn".into(),
    })
    .await?;
    println!(
        "omnidm demo: sim at {}, ingest at {}",
        stack.sim.base_url(),
        stack.ingest_base
    );
    println!(
        "connected @{} through the OAuth flow; integrations page: {}/dashboard/integrations?customerId={} (admin token: {ADMIN_TOKEN})",
        stack.account.username, stack.ingest_base, stack.customer_id
    );

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
            &stack.account.ig_account_id,
            customer,
            &format!("demo-mid-{i}-{started}"),
            text,
            chrono::Utc::now().timestamp_millis(),
        );
        stack.webhook.post(body).await?;
    }
    let mut shown = 0;
    for _ in 0..100 {
        let sent = stack.sim.sent_messages();
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
        println!("Running until Ctrl-C. Send your own: sim send-text --secret {SECRET} --account-id {} --text 'hello'", stack.account.ig_account_id);
        omnidm_shared::ops::shutdown_signal().await;
    }
    stack.shutdown().await;
    Ok(())
}

fn elapsed(started_ms: i64) -> Duration {
    Duration::from_millis((chrono::Utc::now().timestamp_millis() - started_ms).max(0) as u64)
}
