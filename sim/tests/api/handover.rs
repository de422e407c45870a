//! The Handover Protocol (pass, take, request thread control), the Send API's refusal of a thread another
//! app controls, and sender actions.

use crate::helpers::{account, send, start};
use omnidm_sim::{EchoMode, SimHandle, PAGE_INBOX_APP_ID};
use serde_json::{json, Value};

/// A POST of `body` to `{graph}/{path}` with the token as a query parameter; status and JSON body.
async fn post(sim: &SimHandle, path: &str, token: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/{path}", sim.graph_url()))
        .query(&[("access_token", token)])
        .json(&body)
        .send()
        .await
        .expect("the sim answers");
    (
        response.status().as_u16(),
        response.json().await.expect("a JSON body"),
    )
}

fn ig() -> String {
    account().ig_account_id
}

#[tokio::test]
async fn passing_a_thread_gives_it_to_the_target_app_and_taking_it_gives_it_back() {
    let sim = start().await;
    let token = account().page_token;
    let inbox: u64 = PAGE_INBOX_APP_ID.parse().unwrap();
    let pass = json!({"recipient": {"id": "U1"}, "target_app_id": inbox, "metadata": "wants a person"});
    assert_eq!(
        post(&sim, "me/pass_thread_control", &token, pass).await,
        (200, json!({"success": true}))
    );
    assert_eq!(sim.thread_owner(&ig(), "U1").as_deref(), Some(PAGE_INBOX_APP_ID));
    assert_eq!(
        sim.thread_owner(&ig(), "U2"),
        None,
        "other threads stay with the primary app"
    );

    let request = json!({"recipient": {"id": "U1"}, "metadata": "may I?"});
    assert_eq!(
        post(&sim, "me/request_thread_control", &token, request).await.0,
        200
    );
    assert_eq!(sim.thread_owner(&ig(), "U1").as_deref(), Some(PAGE_INBOX_APP_ID));

    let take = json!({"recipient": {"id": "U1"}});
    assert_eq!(post(&sim, "me/take_thread_control", &token, take).await.0, 200);
    assert_eq!(sim.thread_owner(&ig(), "U1"), None);

    let calls = sim.thread_control_calls();
    let actions: Vec<&str> = calls.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions, ["pass", "request", "take"]);
    assert_eq!(calls[0].target_app_id.as_deref(), Some(PAGE_INBOX_APP_ID));
    assert_eq!(calls[0].metadata.as_deref(), Some("wants a person"));
    assert_eq!(
        (
            calls[0].page_id.as_str(),
            calls[0].ig_account_id.as_str(),
            calls[0].recipient_id.as_str()
        ),
        (account().page_id.as_str(), ig().as_str(), "U1")
    );
    assert_eq!(calls[1].target_app_id, None);
    assert_eq!(calls[2].metadata, None);
}

#[tokio::test]
async fn a_page_id_path_is_accepted_and_passing_to_the_sims_own_app_gives_the_thread_back() {
    let sim = start().await;
    let path = format!("{}/pass_thread_control", account().page_id);
    let to_inbox = json!({"recipient": {"id": "U"}, "target_app_id": PAGE_INBOX_APP_ID});
    assert_eq!(post(&sim, &path, &account().page_token, to_inbox).await.0, 200);
    assert_eq!(
        sim.thread_owner(&account().page_id, "U").as_deref(),
        Some(PAGE_INBOX_APP_ID),
        "a page id names its Instagram account's threads"
    );
    let to_self = json!({"recipient": {"id": "U"}, "target_app_id": "1234567890123456"});
    assert_eq!(post(&sim, &path, &account().page_token, to_self).await.0, 200);
    assert_eq!(sim.thread_owner(&ig(), "U"), None);
}

#[tokio::test]
async fn handover_calls_need_a_page_token_a_recipient_and_for_a_pass_a_target() {
    let sim = start().await;
    let body = json!({"recipient": {"id": "U"}, "target_app_id": PAGE_INBOX_APP_ID});
    let (status, error) = post(&sim, "me/pass_thread_control", &account().user_token, body).await;
    assert_eq!((status, error["error"]["code"].clone()), (400, json!(210)));

    let no_target = json!({"recipient": {"id": "U"}});
    let (_, error) = post(&sim, "me/pass_thread_control", &account().page_token, no_target).await;
    assert_eq!(error["error"]["code"], 100);
    let (_, error) = post(&sim, "me/take_thread_control", &account().page_token, json!({})).await;
    assert_eq!(error["error"]["code"], 100);

    assert!(sim.thread_control_calls().is_empty());
    assert_eq!(sim.thread_owner(&ig(), "U"), None);
}

#[tokio::test]
async fn the_send_api_refuses_a_thread_another_app_controls_and_sends_no_echo() {
    let sim = start().await;
    sim.set_echo_target("http://127.0.0.1:9/unused", "s");
    sim.set_echo(EchoMode::BeforeResponse);
    sim.set_thread_owner(&ig(), "U", Some(PAGE_INBOX_APP_ID.to_string()));

    let response = send(&sim, &account().page_token, "U", "hello").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "(#10) Another app is controlling this thread now."
    );
    assert_eq!(body["error"]["type"], "OAuthException");
    assert_eq!(
        (
            body["error"]["code"].clone(),
            body["error"]["error_subcode"].clone()
        ),
        (json!(10), json!(2018300))
    );
    assert!(body["error"]["fbtrace_id"].is_string());
    assert!(sim.sent_messages().is_empty());
    assert!(sim.echo_deliveries().is_empty());
    let rejected = sim.rejected_sends();
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        (
            rejected[0].recipient_id.as_deref(),
            rejected[0].code,
            rejected[0].subcode,
            rejected[0].text_bytes
        ),
        (Some("U"), 10, Some(2_018_300), 5)
    );

    sim.set_thread_owner(&ig(), "U", None);
    assert_eq!(
        send(&sim, &account().page_token, "U", "hello").await.status(),
        200
    );
}

#[tokio::test]
async fn reset_gives_every_thread_back_and_forgets_handover_calls() {
    let sim = start().await;
    let pass = json!({"recipient": {"id": "U"}, "target_app_id": PAGE_INBOX_APP_ID});
    post(&sim, "me/pass_thread_control", &account().page_token, pass).await;
    sim.reset();
    assert_eq!(sim.thread_owner(&ig(), "U"), None);
    assert!(sim.thread_control_calls().is_empty());
}

#[tokio::test]
async fn sender_actions_are_recorded_apart_from_messages_and_never_echoed() {
    let sim = start().await;
    sim.set_echo_target("http://127.0.0.1:9/unused", "s");
    sim.set_echo(EchoMode::BeforeResponse);
    for action in ["typing_on", "typing_off", "mark_seen"] {
        let body = json!({"recipient": {"id": "U"}, "sender_action": action});
        assert_eq!(
            post(&sim, "me/messages", &account().page_token, body).await,
            (200, json!({"recipient_id": "U"}))
        );
    }
    let actions = sim.sender_actions();
    let names: Vec<&str> = actions.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(names, ["typing_on", "typing_off", "mark_seen"]);
    assert_eq!(actions[0].recipient_id, "U");
    assert_eq!(actions[0].page_id, account().page_id);
    assert!(sim.sent_messages().is_empty());
    assert_eq!(sim.counters().sent, 0);
    assert!(sim.echo_deliveries().is_empty());
}

#[tokio::test]
async fn an_unknown_sender_action_is_an_invalid_parameter() {
    let sim = start().await;
    let body = json!({"recipient": {"id": "U"}, "sender_action": "dance"});
    let (status, error) = post(&sim, "me/messages", &account().page_token, body).await;
    assert_eq!((status, error["error"]["code"].clone()), (400, json!(100)));
    assert!(sim.sender_actions().is_empty());
}
