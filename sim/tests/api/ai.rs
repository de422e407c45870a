//! The chat-completions fake.

use crate::helpers::start;
use omnidm_sim::SimHandle;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn complete(sim: &SimHandle, messages: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", sim.ai_base_url()))
        .bearer_auth("sk-test")
        .json(&json!({"model": "gpt-4o-mini", "messages": messages}))
        .send()
        .await
        .unwrap()
}

fn content(body: &Value) -> &str {
    body["choices"][0]["message"]["content"].as_str().unwrap()
}

#[tokio::test]
async fn the_reply_quotes_the_user_messages_after_the_last_assistant_message() {
    let sim = start().await;
    let messages = json!([
        {"role": "system", "content": "You are a shop assistant."},
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "Re: earlier"},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "I want to order"},
        {"role": "user", "content": "the blue one"},
    ]);
    let response = complete(&sim, messages).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(content(&body), "Re: hi | I want to order | the blue one");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["model"], "gpt-4o-mini");

    let recorded = sim.ai_requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].messages.len(), 6);
    assert!(recorded[0].has_authorization);
}

#[tokio::test]
async fn a_fixed_reply_replaces_the_quote_until_cleared() {
    let sim = start().await;
    let long = "x".repeat(3000);
    sim.set_ai_reply(Some(long.clone()));
    let body: Value = complete(&sim, json!([{"role": "user", "content": "hi"}]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(content(&body), long);
    sim.set_ai_reply(None);
    let body: Value = complete(&sim, json!([{"role": "user", "content": "hi"}]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(content(&body), "Re: hi");
}

#[tokio::test]
async fn configured_latency_delays_the_answer() {
    let sim = start().await;
    sim.set_ai_latency(Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(
        complete(&sim, json!([{"role": "user", "content": "hi"}]))
            .await
            .status(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn a_malformed_request_is_a_400_in_openais_shape() {
    let sim = start().await;
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", sim.ai_base_url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.json::<Value>().await.unwrap()["error"]["message"].is_string());
}
