//! Fault injection: queues, standing faults and each fault kind.

use crate::helpers::{account, send, start};
use omnidm_sim::{Fault, FaultTarget, SimHandle};
use serde_json::{json, Value};
use std::time::Duration;

async fn ai_status(sim: &SimHandle) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", sim.ai_base_url()))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn two_queued_ai_failures_fail_two_calls_then_the_ai_answers() {
    let sim = start().await;
    sim.push_faults(FaultTarget::Ai, Fault::HttpStatus(503), 1);
    sim.push_faults(FaultTarget::Ai, Fault::transient(), 1);
    assert_eq!(ai_status(&sim).await, 503);
    assert_eq!(ai_status(&sim).await, 500);
    assert_eq!(ai_status(&sim).await, 200);
    assert_eq!(sim.counters().ai_requests, 3);
}

#[tokio::test]
async fn a_fault_counts_down_and_only_hits_its_target() {
    let sim = start().await;
    sim.push_faults(FaultTarget::Send, Fault::user_unavailable(), 2);
    assert_eq!(ai_status(&sim).await, 200);
    for _ in 0..2 {
        let body: Value = send(&sim, &account().page_token, "1", "hi")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["error"]["code"], 551);
        assert_eq!(body["error"]["error_subcode"], 1545041);
    }
    assert_eq!(send(&sim, &account().page_token, "1", "hi").await.status(), 200);
    assert_eq!(sim.sent_messages().len(), 1);
}

#[tokio::test]
async fn a_throttle_fault_carries_the_business_usage_header() {
    let sim = start().await;
    sim.push_faults(FaultTarget::Send, Fault::throttle(7), 1);
    let response = send(&sim, &account().page_token, "1", "hi").await;
    assert_eq!(response.status(), 400);
    let usage: Value =
        serde_json::from_str(response.headers()["x-business-use-case-usage"].to_str().unwrap()).unwrap();
    let entry = &usage[account().ig_account_id][0];
    assert_eq!(entry["estimated_time_to_regain_access"], 7);
    assert_eq!(entry["type"], "instagram");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (
            body["error"]["code"].clone(),
            body["error"]["error_subcode"].clone()
        ),
        (json!(613), json!(2534040))
    );
}

#[tokio::test]
async fn a_standing_fault_applies_until_cleared() {
    let sim = start().await;
    sim.set_fault(FaultTarget::Send, Some(Fault::outside_window()));
    for _ in 0..3 {
        let body: Value = send(&sim, &account().page_token, "1", "hi")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["error"]["error_subcode"], 2018278);
    }
    sim.clear_faults();
    assert_eq!(send(&sim, &account().page_token, "1", "hi").await.status(), 200);
}

#[tokio::test]
async fn sent_but_error_delivers_the_message_and_still_returns_1357046() {
    let sim = start().await;
    sim.push_faults(FaultTarget::Send, Fault::SentButError, 1);
    let body: Value = send(&sim, &account().page_token, "1", "hi")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            body["error"]["code"].clone(),
            body["error"]["error_subcode"].clone()
        ),
        (json!(1), json!(1357046))
    );
    assert_eq!(sim.sent_messages().len(), 1);
}

#[tokio::test]
async fn a_token_expired_fault_on_graph_calls_leaves_the_send_api_alone() {
    let sim = start().await;
    sim.set_fault(FaultTarget::Graph, Some(Fault::token_expired()));
    let response = reqwest::get(format!(
        "{}/42?access_token={}",
        sim.graph_url(),
        account().page_token
    ))
    .await
    .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], 190);
    assert_eq!(send(&sim, &account().page_token, "1", "hi").await.status(), 200);
}

#[tokio::test]
async fn an_http_status_fault_answers_html() {
    let sim = start().await;
    sim.push_faults(FaultTarget::Graph, Fault::HttpStatus(502), 1);
    let response = reqwest::get(format!("{}/42", sim.graph_url())).await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}

#[tokio::test]
async fn a_delay_fault_slows_the_answer_and_a_hang_outlasts_the_client_timeout() {
    let sim = start().await;
    sim.push_faults(FaultTarget::Ai, Fault::Delay(Duration::from_millis(100)), 1);
    let started = std::time::Instant::now();
    assert_eq!(ai_status(&sim).await, 200);
    assert!(started.elapsed() >= Duration::from_millis(100));

    sim.push_faults(FaultTarget::Send, Fault::Hang, 1);
    let result = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap()
        .post(format!(
            "{}/me/messages?access_token={}",
            sim.graph_url(),
            account().page_token
        ))
        .json(&json!({"recipient": {"id": "1"}, "message": {"text": "hi"}}))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert!(sim.sent_messages().is_empty());
}
