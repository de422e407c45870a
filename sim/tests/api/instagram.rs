//! Instagram Login (authorize with `#_`, the api.instagram.com code exchange and its error shape,
//! ig_exchange_token / ig_refresh_token, `me`) and the Conversations API.

use crate::helpers::{account, graph_get, send, start};
use reqwest::redirect::Policy;
use reqwest::Url;
use serde_json::Value;

const REDIRECT: &str = "http://localhost:8080/api/instagram/callback";

async fn authorize(sim: &omnidm_sim::SimHandle) -> Url {
    let response = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
        .get(sim.instagram_authorize_url())
        .query(&[
            ("client_id", "app"),
            ("redirect_uri", REDIRECT),
            ("state", "s"),
            ("response_type", "code"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
}

async fn exchange(sim: &omnidm_sim::SimHandle, code: &str, redirect: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(sim.instagram_token_url())
        .form(&[
            ("client_id", "app"),
            ("client_secret", "secret"),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect),
            ("code", code),
        ])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn the_instagram_login_round_trip_issues_working_tokens() {
    let sim = start().await;
    let location = authorize(&sim).await;
    assert_eq!(location.fragment(), Some("_"), "Meta's #_ suffix");
    assert_eq!(query(&location, "state").as_deref(), Some("s"));
    let code = query(&location, "code").unwrap();

    let (status, body) = exchange(&sim, &code, REDIRECT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["user_id"], account().ig_account_id.as_str());
    let short = body["data"][0]["access_token"].as_str().unwrap().to_owned();

    // Single use, and Instagram's own error shape.
    let (status, body) = exchange(&sim, &code, REDIRECT).await;
    assert_eq!(status, 400);
    assert_eq!(body["error_type"], "OAuthException");
    assert!(body["error_message"].as_str().unwrap().contains("already used"));

    let ig = sim.instagram_graph_url();
    let root = ig.trim_end_matches("/v25.0");
    let long: Value = reqwest::Client::new()
        .get(format!("{root}/access_token"))
        .query(&[
            ("grant_type", "ig_exchange_token"),
            ("client_secret", "secret"),
            ("access_token", &short),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(long["expires_in"], 5_183_944);
    let long = long["access_token"].as_str().unwrap().to_owned();
    let me: Value = reqwest::Client::new()
        .get(format!("{ig}/me"))
        .bearer_auth(&long)
        .query(&[("fields", "user_id,username")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user_id"], account().ig_account_id.as_str());
    assert_eq!(me["username"], account().username.as_str());

    let refreshed: Value = reqwest::Client::new()
        .get(format!("{root}/refresh_access_token"))
        .query(&[("grant_type", "ig_refresh_token"), ("access_token", &long)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refreshed = refreshed["access_token"].as_str().unwrap().to_owned();
    assert_ne!(refreshed, long);
    assert_eq!(
        sim.instagram_tokens(&account().ig_account_id).last(),
        Some(&refreshed)
    );

    sim.expire_token(&refreshed);
    let expired = reqwest::Client::new()
        .get(format!("{ig}/me"))
        .bearer_auth(&refreshed)
        .send()
        .await
        .unwrap();
    let body: Value = expired.json().await.unwrap();
    assert_eq!(
        (
            body["error"]["code"].as_i64(),
            body["error"]["error_subcode"].as_i64()
        ),
        (Some(190), Some(463))
    );
}

#[tokio::test]
async fn a_wrong_redirect_uri_or_a_denial_gets_no_token() {
    let sim = start().await;
    let code = query(&authorize(&sim).await, "code").unwrap();
    let (status, _) = exchange(&sim, &code, "http://evil.example/cb").await;
    assert_eq!(status, 400);
    sim.set_oauth_deny(true);
    let location = authorize(&sim).await;
    assert_eq!(query(&location, "error").as_deref(), Some("access_denied"));
    assert!(query(&location, "code").is_none());
}

#[tokio::test]
async fn the_conversations_api_lists_inbound_dms_and_our_sends_newest_first() {
    let sim = start().await;
    let account = account();
    sim.add_inbound_message(
        &account.ig_account_id,
        "42",
        "mid.in.1",
        "first",
        1_700_000_000_000,
    );
    sim.add_inbound_message(
        &account.ig_account_id,
        "42",
        "mid.in.2",
        "second",
        1_700_000_001_000,
    );
    assert_eq!(
        send(&sim, &account.page_token, "42", "our reply").await.status(),
        200
    );
    let (status, body) = graph_get(
        &sim,
        &format!("/{}/conversations", account.page_id),
        &account.page_token,
        &[("platform", "instagram")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let messages = body["data"][0]["messages"]["data"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0]["message"], "our reply", "newest first");
    assert_eq!(messages[0]["from"]["id"], account.ig_account_id.as_str());
    assert_eq!(messages[2]["id"], "mid.in.1");
    assert_eq!(messages[2]["created_time"], "2023-11-14T22:13:20+0000");
    // Only with a token of that page.
    let (status, _) = graph_get(
        &sim,
        &format!("/{}/conversations", account.page_id),
        &account.user_token,
        &[("platform", "instagram")],
    )
    .await;
    assert_eq!(status, 400);
}
