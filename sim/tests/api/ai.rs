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

/// The escalation tool as the service offers it (CONTRACT.md).
fn handoff_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "handoff_to_human",
        "description": "Hand the conversation to a person.",
        "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
    }}])
}

async fn complete_with_tools(sim: &SimHandle, messages: Value, tools: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", sim.ai_base_url()))
        .json(&json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools}))
        .send()
        .await
        .unwrap()
        .json()
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

#[tokio::test]
async fn a_customer_asking_for_a_person_gets_a_handoff_tool_call_when_the_tool_is_offered() {
    let sim = start().await;
    let messages = json!([
        {"role": "system", "content": "You are a shop assistant."},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "can I talk to a HUMAN?"},
    ]);
    let body = complete_with_tools(&sim, messages.clone(), handoff_tool()).await;
    let message = &body["choices"][0]["message"];
    assert_eq!(message["role"], "assistant");
    assert!(message["content"].is_null());
    let call = &message["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "handoff_to_human");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"reason": "customer asked for a person"}));
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(sim.ai_requests()[0].tools, ["handoff_to_human"]);

    let without_tool = complete_with_tools(&sim, messages, json!([])).await;
    assert_eq!(content(&without_tool), "Re: hi | can I talk to a HUMAN?");
    assert!(without_tool["choices"][0]["message"].get("tool_calls").is_none());
    assert!(sim.ai_requests()[1].tools.is_empty());
}

#[tokio::test]
async fn a_request_answered_since_the_ask_for_a_person_gets_text() {
    let sim = start().await;
    let messages = json!([
        {"role": "user", "content": "is there a real person there?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "handoff_to_human", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "never"}, {"type": "text", "text": " mind"}]},
    ]);
    let body = complete_with_tools(&sim, messages, handoff_tool()).await;
    assert_eq!(content(&body), "Re: never mind");
    let recorded = &sim.ai_requests()[0];
    assert_eq!(recorded.messages[1].content, "", "null content is accepted");
    assert_eq!(recorded.messages[3].content, "never mind");
}

#[tokio::test]
async fn a_forced_handoff_answers_every_request_that_offers_the_tool_until_cleared() {
    let sim = start().await;
    sim.set_ai_handoff(Some("angry customer".to_string()));
    let hi = json!([{"role": "user", "content": "hi"}]);
    let body = complete_with_tools(&sim, hi.clone(), handoff_tool()).await;
    let arguments = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(arguments).unwrap(),
        json!({"reason": "angry customer"})
    );
    let plain: Value = complete(&sim, hi.clone()).await.json().await.unwrap();
    assert_eq!(content(&plain), "Re: hi", "never a tool call without the tool");

    sim.set_ai_handoff(None);
    let body = complete_with_tools(&sim, hi, handoff_tool()).await;
    assert_eq!(content(&body), "Re: hi");
}
