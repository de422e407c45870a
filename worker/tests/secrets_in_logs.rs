//! Secrets never reach the logs: every log line at every level, from ingest, the worker and the OAuth
//! flow, is captured while a token is connected, used, killed, reconnected and rotated, and searched for
//! the plaintext tokens (including the short- and long-lived user tokens of the OAuth exchange), the app
//! secret, the admin token and the encryption key.
//!
//! Its own test binary: the capturing subscriber is process-global.

mod support;

use omnidm_sim::{Fault, FaultTarget};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{eventually, mid, now_ms, user, Options, Stack, ADMIN_TOKEN, SECRET};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_appears_in_any_log_line_at_any_level() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let stack = Stack::start(Options {
        seed_credential: false,
        worker_env: vec![("TOKEN_CHECK_INTERVAL_SECONDS", "1".into())],
        ..Options::default()
    })
    .await;
    stack.sim.set_oauth_accounts(vec![stack.account.clone()]);
    assert!(stack
        .connect_via_oauth(stack.customer_id)
        .await
        .contains("success"));
    let customer = user();
    stack.dm(&customer, &mid(), "hello", now_ms()).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            stack.sent_to(&customer).len() == 1
        })
        .await
    );
    // A dead token (logged as an error path), then a reconnect.
    stack
        .sim
        .push_faults(FaultTarget::Send, Fault::token_expired(), 1);
    stack.dm(&customer, &mid(), "again", now_ms()).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            stack.credential_status().await.as_deref() == Some("reauth_required")
        })
        .await
    );
    assert!(stack
        .connect_via_oauth(stack.customer_id)
        .await
        .contains("success"));
    assert!(
        eventually(Duration::from_secs(30), || async {
            stack.sent_to(&customer).len() == 2
        })
        .await
    );
    // A failed admin sign-in and a wrong bearer token.
    let _ = omnidm_sim::webhook::http_client()
        .get(format!(
            "{}/api/instagram/status?customerId={}",
            stack.ingest_url, stack.customer_id
        ))
        .bearer_auth(format!("{ADMIN_TOKEN}x"))
        .send()
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let key = stack.key.clone();
    let account = stack.account.clone();
    stack.stop().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.len() > 1_000, "the capture works: {} bytes", logs.len());
    assert!(
        logs.contains("Instagram account connected"),
        "the flow was logged"
    );
    for (name, secret) in [
        ("page token", account.page_token.as_str()),
        ("user token", account.user_token.as_str()),
        ("app secret", SECRET),
        ("admin token", ADMIN_TOKEN),
        ("encryption key", key.as_str()),
    ] {
        assert!(!logs.contains(secret), "the {name} appears in the logs");
    }
    // Every token the sim mints (short- and long-lived user tokens of the OAuth exchange) starts so.
    assert!(!logs.contains("EAAsim"), "a Meta token appears in the logs");
}
