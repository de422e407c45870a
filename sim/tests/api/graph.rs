//! The Graph API fake: Send API, tokens, pages, profiles, unknown paths and request records.

use crate::helpers::{account, graph_get, send, start};
use omnidm_sim::{SimAccount, SimHandle};
use serde_json::{json, Value};

#[tokio::test]
async fn send_api_records_a_message_and_returns_its_id() {
    let sim = start().await;
    let response = send(&sim, &account().page_token, "5551", "hello there").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["recipient_id"], "5551");
    let message_id = body["message_id"].as_str().unwrap();
    assert!(message_id.starts_with("m_sim_"));

    let sent = sim.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message_id, message_id);
    assert_eq!(sent[0].ig_account_id, account().ig_account_id);
    assert_eq!(sent[0].page_id, account().page_id);
    assert_eq!(
        (sent[0].recipient_id.as_str(), sent[0].text.as_str()),
        ("5551", "hello there")
    );
    assert_eq!(sent[0].messaging_type.as_deref(), Some("RESPONSE"));
}

#[tokio::test]
async fn every_send_gets_a_distinct_message_id() {
    let sim = start().await;
    let mut ids = std::collections::HashSet::new();
    for i in 0..20 {
        let body: Value = send(&sim, &account().page_token, "1", &format!("m{i}"))
            .await
            .json()
            .await
            .unwrap();
        ids.insert(body["message_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 20);
}

#[tokio::test]
async fn text_over_1000_bytes_is_refused_with_error_100_and_recorded_as_rejected() {
    let sim = start().await;
    // 500 two-byte characters are exactly 1000 bytes: allowed.
    assert_eq!(
        send(&sim, &account().page_token, "1", &"é".repeat(500))
            .await
            .status(),
        200
    );

    let response = send(&sim, &account().page_token, "1", &format!("{}x", "é".repeat(500))).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 100);
    assert_eq!(body["error"]["type"], "OAuthException");
    assert_eq!(sim.sent_messages().len(), 1);
    let rejected = sim.rejected_sends();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].text_bytes, 1001);
}

#[tokio::test]
async fn unknown_and_revoked_tokens_get_error_190() {
    let sim = start().await;
    let body: Value = send(&sim, "EAAnobody", "1", "hi").await.json().await.unwrap();
    assert_eq!(
        (
            body["error"]["code"].clone(),
            body["error"]["error_subcode"].clone()
        ),
        (json!(190), json!(463))
    );

    sim.revoke_token(&account().page_token);
    let response = send(&sim, &account().page_token, "1", "hi").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (
            body["error"]["code"].clone(),
            body["error"]["error_subcode"].clone()
        ),
        (json!(190), json!(460))
    );
    assert!(sim.sent_messages().is_empty());
}

#[tokio::test]
async fn a_bearer_token_works_like_the_query_parameter_under_any_version() {
    let sim = start().await;
    let response = reqwest::Client::new()
        .post(format!("{}/graph/v19.0/me/messages", sim.base_url()))
        .bearer_auth(account().page_token)
        .json(&json!({"recipient": {"id": "7"}, "message": {"text": "hi"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(sim.sent_messages()[0].recipient_id, "7");
}

#[tokio::test]
async fn an_unknown_path_is_a_meta_json_error_not_an_html_404() {
    let sim = start().await;
    let (status, body) = graph_get(&sim, "/me/conversations/extra/deep", &account().page_token, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 100);
    let response = reqwest::get(format!("{}/graph", sim.base_url())).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], 100);
}

#[tokio::test]
async fn every_graph_request_is_recorded_without_its_token() {
    let sim = start().await;
    send(&sim, &account().page_token, "1", "hi").await;
    reqwest::get(format!("{}/42?fields=name", sim.graph_url()))
        .await
        .unwrap();
    let requests = sim.graph_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", "/me/messages")
    );
    assert!(requests[0].has_token);
    assert!(!requests[0].query.contains_key("access_token"));
    assert_eq!(requests[1].version, "v25.0");
    assert_eq!(requests[1].query.get("fields").map(String::as_str), Some("name"));
    assert!(!requests[1].has_token);
}

#[tokio::test]
async fn profiles_are_derived_from_the_id() {
    let sim = start().await;
    let (status, first) = graph_get(
        &sim,
        "/1129842642640637",
        &account().page_token,
        &[("fields", "name,username")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(first["id"], "1129842642640637");
    let (_, again) = graph_get(
        &sim,
        "/1129842642640637",
        &account().page_token,
        &[("fields", "name,username")],
    )
    .await;
    assert_eq!(first, again);
    assert!(first["username"].as_str().unwrap().ends_with("0637"));
}

async fn page_node(sim: &SimHandle, account: &SimAccount) -> Value {
    let fields = [("fields", "instagram_business_account{id,username,name}")];
    graph_get(
        sim,
        &format!("/{}", account.page_id),
        &account.user_token,
        &fields,
    )
    .await
    .1
}

#[tokio::test]
async fn a_page_node_shows_its_instagram_account_unless_it_has_none() {
    let sim = start().await;
    let node = page_node(&sim, &account()).await;
    assert_eq!(node["id"], account().page_id);
    assert_eq!(node["instagram_business_account"]["id"], account().ig_account_id);
    assert_eq!(node["instagram_business_account"]["username"], account().username);
    assert!(node.get("access_token").is_none());

    let bare = SimAccount::generated(2).without_instagram();
    sim.add_account(bare.clone());
    let node = page_node(&sim, &bare).await;
    assert_eq!(node["id"], bare.page_id);
    assert!(node.get("instagram_business_account").is_none());
}
