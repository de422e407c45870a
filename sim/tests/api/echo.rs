//! Echo webhooks: signed, Meta-shaped, before or after the Send API answers.

use crate::helpers::{account, eventually, send, start};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use omnidm_shared::signature::{WebhookVerifier, SIGNATURE_HEADER};
use omnidm_sim::EchoMode;
use secrecy::SecretString;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// A webhook endpoint that accepts only bodies signed with `s` and keeps them.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl Receiver {
    async fn start() -> Self {
        let verifier = WebhookVerifier::new(vec![SecretString::from("s".to_string())]);
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| async move {
                let signature = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
                match verifier.verify(signature, body) {
                    Ok(verified) => {
                        kept.lock().unwrap().push(verified.into_bytes());
                        StatusCode::OK
                    }
                    Err(_) => StatusCode::FORBIDDEN,
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, bodies }
    }

    fn bodies(&self) -> Vec<Bytes> {
        self.bodies.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn echo_before_response_posts_a_signed_echo_before_the_send_api_answers() {
    let sim = start().await;
    let receiver = Receiver::start().await;
    sim.set_echo_target(&receiver.url, "s");
    sim.set_echo(EchoMode::BeforeResponse);

    let response: Value = send(&sim, &account().page_token, "5551", "Olá ❤️")
        .await
        .json()
        .await
        .unwrap();

    // No waiting: in this mode the echo was delivered before the Send API answered.
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].starts_with(br#"{"object":"instagram","entry":[{"time":"#));
    assert!(bodies[0].is_ascii(), "non-ASCII is escaped as Meta does");
    let echo: Value = serde_json::from_slice(&bodies[0]).unwrap();
    let entry = &echo["entry"][0];
    let event = &entry["messaging"][0];
    assert_eq!(entry["id"], account().ig_account_id);
    assert_eq!(event["sender"]["id"], account().ig_account_id);
    assert_eq!(event["recipient"]["id"], "5551");
    assert_eq!(event["message"]["mid"], response["message_id"]);
    assert_eq!(event["message"]["text"], "Olá ❤️");
    assert_eq!(event["message"]["is_echo"], true);
    assert_eq!(
        event["message"]["app_id"], 1234567890123456u64,
        "an API send's echo names the sending app, as a number"
    );
    assert_eq!(sim.echo_deliveries()[0].status, Some(200));
}

#[tokio::test]
async fn a_messenger_users_echo_is_a_page_object_sent_by_the_page() {
    let sim = start().await;
    let receiver = Receiver::start().await;
    sim.set_echo_target(&receiver.url, "s");
    sim.set_echo(EchoMode::BeforeResponse);
    sim.register_messenger_user("24000000000000001");

    let response: Value = send(&sim, &account().page_token, "24000000000000001", "oi")
        .await
        .json()
        .await
        .unwrap();

    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].starts_with(br#"{"object":"page","entry":[{"id":"#));
    let echo: Value = serde_json::from_slice(&bodies[0]).unwrap();
    let entry = &echo["entry"][0];
    let event = &entry["messaging"][0];
    assert_eq!(entry["id"], account().page_id);
    assert!(entry["time"].is_i64());
    assert_eq!(event["sender"]["id"], account().page_id);
    assert_eq!(event["recipient"]["id"], "24000000000000001");
    assert!(event["timestamp"].is_i64());
    assert_eq!(event["message"]["mid"], response["message_id"]);
    assert_eq!(event["message"]["text"], "oi");
    assert_eq!(event["message"]["is_echo"], true);
    assert_eq!(event["message"]["app_id"], 1234567890123456u64);

    send(&sim, &account().page_token, "5551", "hi").await;
    let instagram: Value = serde_json::from_slice(&receiver.bodies()[1]).unwrap();
    assert_eq!(
        instagram["object"], "instagram",
        "other recipients stay Instagram users"
    );
}

#[tokio::test]
async fn echo_after_response_arrives_soon_after() {
    let sim = start().await;
    let receiver = Receiver::start().await;
    sim.set_echo_target(&receiver.url, "s");
    sim.set_echo(EchoMode::AfterResponse);
    assert_eq!(send(&sim, &account().page_token, "1", "hi").await.status(), 200);
    let bodies = eventually(|| async { Some(receiver.bodies()).filter(|b| !b.is_empty()) }).await;
    assert_eq!(bodies.len(), 1);
}

#[tokio::test]
async fn an_echo_signed_with_the_wrong_secret_is_refused_and_recorded_as_such() {
    let sim = start().await;
    let receiver = Receiver::start().await;
    sim.set_echo_target(&receiver.url, "not-s");
    sim.set_echo(EchoMode::BeforeResponse);
    assert_eq!(send(&sim, &account().page_token, "1", "hi").await.status(), 200);
    assert!(receiver.bodies().is_empty());
    assert_eq!(sim.echo_deliveries()[0].status, Some(403));
}

#[tokio::test]
async fn echoes_are_off_by_default() {
    let sim = start().await;
    send(&sim, &account().page_token, "1", "hi").await;
    assert!(sim.echo_deliveries().is_empty());
    assert_eq!(sim.counters().echoes, 0);
}
