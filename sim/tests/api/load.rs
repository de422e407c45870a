//! The load generator against a tiny local endpoint that verifies every signature.

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use omnidm_shared::signature::{WebhookVerifier, SIGNATURE_HEADER};
use omnidm_sim::load::{self, LoadMode, LoadOptions};
use secrecy::SecretString;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Starts an endpoint that answers 200 to correctly signed bodies and keeps each body's mid and sender.
async fn endpoint() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let verifier = WebhookVerifier::new(vec![SecretString::from("s".to_string())]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| async move {
            let Ok(verified) = verifier.verify(headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes()), body)
            else {
                return StatusCode::FORBIDDEN;
            };
            let value: Value = serde_json::from_slice(verified.as_bytes()).unwrap();
            let event = &value["entry"][0]["messaging"][0];
            let mid = event["message"]["mid"].as_str().unwrap().to_string();
            let sender = event["sender"]["id"].as_str().unwrap().to_string();
            kept.lock().unwrap().push((mid, sender));
            StatusCode::OK
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn options(url: String, mode: LoadMode) -> LoadOptions {
    LoadOptions {
        url,
        secret: "s".to_string(),
        senders: 10,
        mode,
        concurrency: 4,
        duration: Duration::from_millis(400),
        warmup: Duration::from_millis(100),
        ..LoadOptions::default()
    }
}

#[tokio::test]
async fn a_closed_loop_run_reports_only_accepted_signed_unique_requests() {
    let (url, seen) = endpoint().await;
    let report = load::run(&options(url, LoadMode::Closed)).await.unwrap();

    assert!(report.requests > 0);
    assert_eq!(report.accepted(), report.requests, "{report}");
    assert_eq!(report.transport_errors, 0);
    assert!(report.events_per_sec > 0.0);
    let l = report.latency_ms;
    assert!(0.0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);

    let seen = seen.lock().unwrap();
    assert!(
        seen.len() as u64 > report.requests,
        "warm-up requests were sent but not counted"
    );
    assert_eq!(
        seen.iter().map(|(mid, _)| mid).collect::<HashSet<_>>().len(),
        seen.len()
    );
    assert_eq!(
        seen.iter()
            .map(|(_, sender)| sender)
            .collect::<HashSet<_>>()
            .len(),
        10
    );
}

#[tokio::test]
async fn an_open_loop_run_sends_at_the_requested_rate() {
    let (url, _) = endpoint().await;
    let report = load::run(&options(url, LoadMode::Open { rate: 200.0 }))
        .await
        .unwrap();
    // 200/s for 0.4 s is 80 requests, give or take the edges of the window.
    assert!((78..=82).contains(&report.requests), "{report}");
    assert_eq!(report.accepted(), report.requests);
}

#[tokio::test]
async fn a_wrong_secret_shows_up_as_403s_and_no_events() {
    let (url, _) = endpoint().await;
    let report = load::run(&LoadOptions {
        secret: "wrong".to_string(),
        ..options(url, LoadMode::Closed)
    })
    .await
    .unwrap();
    assert!(report.by_status.get(&403).copied().unwrap_or(0) > 0);
    assert_eq!(report.events_per_sec, 0.0);
}

#[tokio::test]
async fn an_https_url_is_refused_and_a_dead_port_counts_transport_errors() {
    let refused = load::run(&options("https://127.0.0.1:1/hook".to_string(), LoadMode::Closed)).await;
    assert!(matches!(refused, Err(load::LoadError::Target(_))));

    // Nothing listens there: every request is a transport error, none is counted as accepted.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let report = load::run(&options(url, LoadMode::Closed)).await.unwrap();
    assert!(report.transport_errors > 0, "{report}");
    assert_eq!(report.accepted(), 0);
}

#[tokio::test]
async fn the_baseline_ingest_queues_what_it_accepts_refuses_bad_signatures_and_cleans_up() {
    use lapin::options::QueueDeclareOptions;
    use lapin::{Connection, ConnectionProperties};
    use load::baseline::{self, BaselineOptions};

    let amqp_url =
        std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
    let queue = format!("t_{}.baseline", uuid::Uuid::new_v4().simple());
    let server = BaselineOptions {
        amqp_url: amqp_url.clone(),
        queue: queue.clone(),
        secret: "s".to_string(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/webhooks/instagram", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        baseline::serve(&server, listener, async {
            let _ = stopped.await;
        })
        .await
    });

    let connection = Connection::connect(&amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let queued = || async {
        channel
            .queue_declare(queue.as_str().into(), passive, Default::default())
            .await
            .unwrap()
            .message_count()
    };

    let unsigned = load::run(&LoadOptions {
        secret: "wrong".to_string(),
        ..options(url.clone(), LoadMode::Closed)
    })
    .await
    .unwrap();
    assert!(unsigned.requests > 0 && unsigned.accepted() == 0, "{unsigned}");
    assert_eq!(queued().await, 0, "nothing unverified is published");

    let signed = load::run(&options(url, LoadMode::Closed)).await.unwrap();
    assert!(
        signed.accepted() > 0 && signed.accepted() == signed.requests,
        "{signed}"
    );
    let queued = queued().await;
    assert!(
        u64::from(queued) > signed.requests,
        "the counted 200s and the warm-up's are all queued: {queued}"
    );

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let gone = connection
        .create_channel()
        .await
        .unwrap()
        .queue_declare(queue.as_str().into(), passive, Default::default())
        .await;
    assert!(gone.is_err(), "the queue is deleted when the baseline stops");
}
