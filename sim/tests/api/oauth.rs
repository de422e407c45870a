//! The Facebook Login flow: dialog, code, short- and long-lived tokens, pages, subscriptions.

use crate::helpers::{graph_get, start};
use omnidm_sim::SimAccount;
use reqwest::redirect::Policy;
use reqwest::Url;
use serde_json::Value;
use std::collections::HashMap;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Opens the dialog and returns the query of the redirect it answers with.
async fn dialog(base: &str, state: &str) -> HashMap<String, String> {
    let response = no_redirects()
        .get(base)
        .query(&[
            ("client_id", "app"),
            ("redirect_uri", "http://localhost:8080/api/instagram/callback"),
            ("state", state),
            ("response_type", "code"),
            ("scope", "instagram_basic,instagram_manage_messages"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.path(), "/api/instagram/callback");
    location.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn the_oauth_round_trip_ends_with_a_subscribed_page() {
    let sim = start().await;
    let redirect = dialog(&sim.oauth_dialog_url(), "st4te").await;
    assert_eq!(redirect["state"], "st4te");
    let code = &redirect["code"];

    let exchange = [
        ("client_id", "app"),
        ("client_secret", "secret"),
        ("redirect_uri", "http://localhost:8080/api/instagram/callback"),
        ("code", code.as_str()),
    ];
    let (status, short) = graph_get(&sim, "/oauth/access_token", "", &exchange).await;
    assert_eq!(status, 200, "{short}");
    assert_eq!(short["token_type"], "bearer");
    let short_token = short["access_token"].as_str().unwrap();

    // Codes are single use.
    let (status, reused) = graph_get(&sim, "/oauth/access_token", "", &exchange).await;
    assert_eq!(
        (status, reused["error"]["type"].as_str()),
        (400, Some("OAuthException"))
    );

    let long_lived = [
        ("grant_type", "fb_exchange_token"),
        ("client_id", "app"),
        ("client_secret", "secret"),
        ("fb_exchange_token", short_token),
    ];
    let (status, long) = graph_get(&sim, "/oauth/access_token", "", &long_lived).await;
    assert_eq!(status, 200);
    assert_eq!(long["expires_in"], 5183944);
    let user_token = long["access_token"].as_str().unwrap();

    let fields = [(
        "fields",
        "id,name,access_token,instagram_business_account{id,username,name}",
    )];
    let (status, pages) = graph_get(&sim, "/me/accounts", user_token, &fields).await;
    assert_eq!(status, 200);
    let page = &pages["data"][0];
    let expected = SimAccount::generated(1);
    assert_eq!(page["id"], expected.page_id);
    assert_eq!(page["access_token"], expected.page_token);
    assert_eq!(page["instagram_business_account"]["id"], expected.ig_account_id);

    let client = reqwest::Client::new();
    let url = format!("{}/{}/subscribed_apps", sim.graph_url(), expected.page_id);
    let subscribe = client
        .post(&url)
        .query(&[
            ("subscribed_fields", "messages,messaging_postbacks"),
            ("access_token", &expected.page_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(subscribe.json::<Value>().await.unwrap()["success"], true);
    assert_eq!(
        sim.subscriptions(&expected.page_id),
        Some(vec!["messages".to_string(), "messaging_postbacks".to_string()])
    );
    let (_, listed) = graph_get(
        &sim,
        &format!("/{}/subscribed_apps", expected.page_id),
        &expected.page_token,
        &[],
    )
    .await;
    assert_eq!(listed["data"][0]["subscribed_fields"][1], "messaging_postbacks");

    let unsubscribe = client
        .delete(&url)
        .query(&[("access_token", &expected.page_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(unsubscribe.json::<Value>().await.unwrap()["success"], true);
    assert_eq!(sim.subscriptions(&expected.page_id), None);
}

#[tokio::test]
async fn a_denied_dialog_redirects_with_access_denied_and_no_code() {
    let sim = start().await;
    sim.set_oauth_deny(true);
    let redirect = dialog(&sim.oauth_dialog_url(), "s").await;
    assert_eq!(redirect["error"], "access_denied");
    assert_eq!(redirect["error_reason"], "user_denied");
    assert_eq!(redirect["state"], "s");
    assert!(!redirect.contains_key("code"));
}

#[tokio::test]
async fn an_invalid_code_is_an_oauth_exception() {
    let sim = start().await;
    let query = [
        ("client_id", "a"),
        ("client_secret", "b"),
        ("redirect_uri", "http://x/"),
        ("code", "forged"),
    ];
    let (status, body) = graph_get(&sim, "/oauth/access_token", "", &query).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "OAuthException");
    assert_eq!(body["error"]["code"], 100);
}

#[tokio::test]
async fn configured_oauth_accounts_are_listed_including_one_without_instagram() {
    let sim = start().await;
    let bare = SimAccount::generated(3).without_instagram();
    sim.set_oauth_accounts(vec![SimAccount::generated(2), bare.clone()]);
    let redirect = dialog(&sim.oauth_dialog_url(), "s").await;
    let query = [
        ("client_id", "a"),
        ("client_secret", "b"),
        ("redirect_uri", "http://localhost:8080/api/instagram/callback"),
        ("code", redirect["code"].as_str()),
    ];
    let (_, token) = graph_get(&sim, "/oauth/access_token", "", &query).await;
    let fields = [(
        "fields",
        "id,name,access_token,instagram_business_account{id,username,name}",
    )];
    let (_, pages) = graph_get(
        &sim,
        "/me/accounts",
        token["access_token"].as_str().unwrap(),
        &fields,
    )
    .await;
    let data = pages["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["id"], bare.page_id);
    assert!(data[1].get("instagram_business_account").is_none());
}
