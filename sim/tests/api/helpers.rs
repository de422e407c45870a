//! Shared set-up: a started sim, its default account, and small request helpers.

use omnidm_sim::{Sim, SimAccount, SimHandle, SimOptions};
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;

/// A sim on a free port with default options.
pub async fn start() -> SimHandle {
    Sim::start(SimOptions::default()).await.expect("the sim starts")
}

/// The account every default sim registers (the default OAuth account).
pub fn account() -> SimAccount {
    SimAccount::generated(1)
}

/// A Send API call with the token as a query parameter.
pub async fn send(sim: &SimHandle, token: &str, recipient: &str, text: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/me/messages", sim.graph_url()))
        .query(&[("access_token", token)])
        .json(
            &json!({"recipient": {"id": recipient}, "message": {"text": text}, "messaging_type": "RESPONSE"}),
        )
        .send()
        .await
        .expect("the sim answers")
}

/// A GET under the Graph URL with the token as a query parameter; status and JSON body.
pub async fn graph_get(sim: &SimHandle, path: &str, token: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", sim.graph_url()))
        .query(&[("access_token", token)])
        .query(query)
        .send()
        .await
        .expect("the sim answers");
    (
        response.status().as_u16(),
        response.json().await.expect("a JSON body"),
    )
}

/// Polls `check` every 10 ms until it yields `Some`, for at most two seconds.
pub async fn eventually<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
