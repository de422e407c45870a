//! The `/_sim/` control API and recording options.

use crate::helpers::{account, send, start};
use omnidm_sim::{Sim, SimAccount, SimOptions};
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn faults_can_be_queued_and_cleared_over_http() {
    let sim = start().await;
    let fault = json!({"target": "send", "fault": {"graph_error": {"http_status": 400, "code": 613, "usage_minutes": 2}}, "count": 1});
    let response = client()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let throttled = send(&sim, &account().page_token, "1", "hi").await;
    assert!(throttled.headers().contains_key("x-business-use-case-usage"));
    assert_eq!(send(&sim, &account().page_token, "1", "hi").await.status(), 200);

    let standing = json!({"target": "ai", "fault": {"http_status": 503}});
    client()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&standing)
        .send()
        .await
        .unwrap();
    client()
        .delete(format!("{}/_sim/faults", sim.base_url()))
        .send()
        .await
        .unwrap();
    let ai = client()
        .post(format!("{}/chat/completions", sim.ai_base_url()))
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(ai.status(), 200);
}

#[tokio::test]
async fn accounts_added_over_http_are_accepted_and_sends_are_listed() {
    let sim = start().await;
    let extra = SimAccount::generated(9);
    let added = client()
        .post(format!("{}/_sim/accounts", sim.base_url()))
        .json(&extra)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    assert_eq!(send(&sim, &extra.page_token, "1", "hi").await.status(), 200);
    let sent: Value = client()
        .get(format!("{}/_sim/sent", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sent[0]["ig_account_id"], extra.ig_account_id);
    let graph: Value = client()
        .get(format!("{}/_sim/graph-requests", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(graph[0]["path"], "/me/messages");
}

#[tokio::test]
async fn ai_settings_change_over_http() {
    let sim = start().await;
    let url = format!("{}/_sim/ai", sim.base_url());
    client()
        .post(&url)
        .json(&json!({"latency_ms": 0, "reply": "fixed"}))
        .send()
        .await
        .unwrap();
    let complete = || async {
        let body: Value = client()
            .post(format!("{}/chat/completions", sim.ai_base_url()))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "q"}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(complete().await, "fixed");
    client()
        .post(&url)
        .json(&json!({"latency_ms": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(complete().await, "fixed", "an absent reply leaves it unchanged");
    client()
        .post(&url)
        .json(&json!({"reply": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(complete().await, "Re: q");
    let requests: Value = client()
        .get(format!("{}/_sim/ai-requests", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(requests.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn reset_returns_to_the_state_after_start() {
    let sim = start().await;
    sim.revoke_token(&account().page_token);
    sim.add_account(SimAccount::generated(5));
    sim.set_fault(omnidm_sim::FaultTarget::Ai, Some(omnidm_sim::Fault::Hang));
    send(&sim, &account().page_token, "1", "hi").await;
    client()
        .post(format!("{}/_sim/reset", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(sim.graph_requests().is_empty());
    assert_eq!(sim.counters().graph_requests, 0);
    assert_eq!(sim.accounts(), vec![account()]);
    assert_eq!(send(&sim, &account().page_token, "1", "hi").await.status(), 200);
}

#[tokio::test]
async fn without_recording_only_counters_are_kept() {
    let sim = Sim::start(SimOptions {
        record: false,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    for _ in 0..3 {
        assert_eq!(send(&sim, &account().page_token, "1", "hi").await.status(), 200);
    }
    assert!(sim.sent_messages().is_empty());
    assert!(sim.graph_requests().is_empty());
    assert_eq!(sim.counters().sent, 3);
    assert_eq!(sim.counters().graph_requests, 3);
}

#[tokio::test]
async fn after_shutdown_calls_fail_even_over_a_pooled_connection() {
    let sim = start().await;
    let client = client();
    let url = format!(
        "{}/me/messages?access_token={}",
        sim.graph_url(),
        account().page_token
    );
    let body = json!({"recipient": {"id": "1"}, "message": {"text": "hi"}});
    assert_eq!(client.post(&url).json(&body).send().await.unwrap().status(), 200);
    sim.shutdown();
    crate::helpers::eventually(|| async { client.post(&url).json(&body).send().await.err() }).await;
    assert_eq!(sim.counters().sent, 1);
}

#[tokio::test]
async fn thread_owners_messenger_users_and_handoffs_can_be_set_over_http() {
    let sim = start().await;
    let base = sim.base_url().to_string();
    let owner = json!({"ig_account_id": account().ig_account_id, "recipient_id": "U", "app_id": "42"});
    let response = client()
        .post(format!("{base}/_sim/thread-owner"))
        .json(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        sim.thread_owner(&account().ig_account_id, "U").as_deref(),
        Some("42")
    );
    assert_eq!(send(&sim, &account().page_token, "U", "hi").await.status(), 400);

    let messenger = json!({"psid": "P1"});
    let response = client()
        .post(format!("{base}/_sim/messenger-users"))
        .json(&messenger)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let handoff = json!({"handoff": "because"});
    client()
        .post(format!("{base}/_sim/ai"))
        .json(&handoff)
        .send()
        .await
        .unwrap();
    let body: Value = client()
        .post(format!("{}/chat/completions", sim.ai_base_url()))
        .json(&json!({"model": "m", "messages": [], "tools": [{"type": "function", "function": {"name": "handoff_to_human"}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");

    let calls: Value = client()
        .get(format!("{base}/_sim/thread-control"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls, json!([]));
    let actions: Value = client()
        .get(format!("{base}/_sim/sender-actions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(actions, json!([]));
}
