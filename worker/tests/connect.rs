//! "Connect Instagram" end to end (sim plays Meta; real PostgreSQL and RabbitMQ): the OAuth flow over
//! HTTP, every way it can fail, the encrypted credential, the admin API, disconnect, reconnect with
//! parked replies, the token lifecycle and key rotation.

mod support;

use omnidm_shared::crypto::{generate_key_base64, token_associated_data, Key, Keyring};
use omnidm_sim::{Fault, FaultTarget};
use reqwest::Method;
use secrecy::ExposeSecret;
use std::time::Duration;
use support::{eventually, mid, now_ms, user, Options, Stack};
use uuid::Uuid;

const LONG: Duration = Duration::from_secs(30);

fn unconnected() -> Options {
    Options {
        seed_credential: false,
        ..Options::default()
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn credential_count(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM instagram_credentials")
        .fetch_one(&stack.db().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connecting_stores_an_encrypted_page_token_subscribes_and_answers_dms() {
    let stack = Stack::start(unconnected()).await;
    stack.sim.set_oauth_accounts(vec![stack.account.clone()]);

    let (status, created) = stack
        .admin(
            Method::POST,
            "/api/customers",
            Some(serde_json::json!({ "name": "Shoe Shop", "systemPrompt": "Be brief." })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let customer: Uuid = created["id"].as_str().unwrap().parse().unwrap();

    let url = stack.auth_url(customer).await;
    assert_eq!(query_param(&url, "client_id").as_deref(), Some("e2e-app"));
    assert_eq!(query_param(&url, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query_param(&url, "scope").as_deref(),
        Some(
            "instagram_basic,instagram_manage_messages,pages_manage_metadata,pages_show_list,pages_messaging"
        )
    );
    assert_eq!(
        query_param(&url, "redirect_uri"),
        Some(format!("{}/api/instagram/callback", stack.ingest_url))
    );
    let state = query_param(&url, "state").unwrap();
    assert!(
        state.len() >= 43,
        "a 256-bit state is at least 43 base64url characters"
    );
    assert_ne!(
        state,
        query_param(&stack.auth_url(customer).await, "state").unwrap()
    );

    let callback = stack.hop(&url).await;
    let landing = stack.hop(&callback).await;
    assert_eq!(
        landing,
        format!(
            "{}/dashboard/integrations?success=instagram_connected&customerId={customer}",
            stack.ingest_url
        )
    );

    // At rest: ciphertext only, bound to its row.
    let (id, stored, page_id): (Uuid, String, Option<String>) = sqlx::query_as(
        "SELECT id, access_token_enc, page_id FROM instagram_credentials WHERE account_id = $1",
    )
    .bind(&stack.account.ig_account_id)
    .fetch_one(&stack.db().await)
    .await
    .unwrap();
    assert!(!stored.contains(&stack.account.page_token));
    assert!(!stored.contains(&stack.account.user_token));
    assert_eq!(page_id.as_deref(), Some(stack.account.page_id.as_str()));
    let keyring = Keyring::new(Key::from_base64(&stack.key).unwrap(), vec![]);
    let token = keyring
        .decrypt(&stored, token_associated_data(id).as_bytes())
        .unwrap();
    assert_eq!(
        token.expose_secret(),
        stack.account.page_token,
        "the PAGE token is stored"
    );
    assert!(keyring
        .decrypt(&stored, token_associated_data(Uuid::new_v4()).as_bytes())
        .is_err());

    let fields = stack.sim.subscriptions(&stack.account.page_id).unwrap();
    for field in [
        "messages",
        "messaging_postbacks",
        "message_reactions",
        "messaging_seen",
    ] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }

    let (status, body) = stack
        .admin(
            Method::GET,
            &format!("/api/instagram/status?customerId={customer}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["connected"], true);
    assert_eq!(body["status"], "active");
    assert_eq!(body["username"], stack.account.username.as_str());
    assert_eq!(body["accounts"][0]["recentEvents"][0]["kind"], "connected");
    assert!(!body.to_string().contains(&stack.account.page_token));

    let customer_user = user();
    stack
        .dm(&customer_user, &mid(), "hello, are you open?", now_ms())
        .await;
    assert!(
        eventually(LONG, || async { stack.sent_to(&customer_user).len() == 1 }).await,
        "the DM to the newly connected account is answered"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denied_missing_unknown_expired_and_reused_states_change_nothing() {
    let stack = Stack::start(unconnected()).await;
    stack.sim.set_oauth_accounts(vec![stack.account.clone()]);
    let dashboard = format!("{}/dashboard/integrations", stack.ingest_url);

    stack.sim.set_oauth_deny(true);
    let url = stack.auth_url(stack.customer_id).await;
    let callback = stack.hop(&url).await;
    assert_eq!(
        stack.hop(&callback).await,
        format!("{dashboard}?error=oauth_denied&customerId={}", stack.customer_id)
    );
    // The denied attempt's state was consumed too.
    let denied_state = query_param(&callback, "state").unwrap();
    stack.sim.set_oauth_deny(false);

    let callback_base = format!("{}/api/instagram/callback", stack.ingest_url);
    let invalid = format!("{dashboard}?error=invalid_state");
    assert_eq!(stack.hop(&format!("{callback_base}?code=abc")).await, invalid);
    assert_eq!(
        stack.hop(&format!("{callback_base}?code=abc&state=forged")).await,
        invalid
    );
    assert_eq!(
        stack
            .hop(&format!("{callback_base}?code=abc&state={denied_state}"))
            .await,
        invalid
    );
    // A state past its ten minutes is refused.
    let url = stack.auth_url(stack.customer_id).await;
    let callback = stack.hop(&url).await;
    sqlx::query("UPDATE oauth_states SET expires_at = now() - interval '1 second'")
        .execute(&stack.db().await)
        .await
        .unwrap();
    assert_eq!(stack.hop(&callback).await, invalid, "expired");

    let url = stack.auth_url(stack.customer_id).await;
    let callback = stack.hop(&url).await;
    assert!(stack.hop(&callback).await.contains("success=instagram_connected"));
    assert_eq!(stack.hop(&callback).await, invalid, "reused");
    assert_eq!(credential_count(&stack).await, 1);
    // Open redirect attempts: the target is always APP_URL.
    assert!(stack
        .hop(&format!(
            "{callback_base}?state=x&redirect_uri=https://evil.example"
        ))
        .await
        .starts_with(&dashboard));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graph_error_at_any_step_is_oauth_failed_and_leaves_no_credential() {
    let stack = Stack::start(unconnected()).await;
    stack.sim.set_oauth_accounts(vec![stack.account.clone()]);
    // Graph calls of the flow, in order: code exchange, long-lived exchange, /me/accounts, subscribe.
    for step in 0..4 {
        stack.sim.clear_faults();
        if step > 0 {
            stack
                .sim
                .push_faults(FaultTarget::Graph, Fault::Delay(Duration::from_millis(1)), step);
        }
        stack.sim.push_faults(FaultTarget::Graph, Fault::transient(), 1);
        let landing = stack.connect_via_oauth(stack.customer_id).await;
        assert!(landing.contains("error=oauth_failed"), "step {step}: {landing}");
        assert_eq!(credential_count(&stack).await, 0, "step {step}");
    }
    stack.sim.clear_faults();

    // A Page without a linked Instagram account.
    stack
        .sim
        .set_oauth_accounts(vec![stack.account.clone().without_instagram()]);
    let landing = stack.connect_via_oauth(stack.customer_id).await;
    assert!(landing.contains("error=oauth_failed"), "{landing}");
    assert_eq!(credential_count(&stack).await, 0);

    // An account that belongs to another customer stays with it.
    stack.sim.set_oauth_accounts(vec![stack.account.clone()]);
    assert!(stack
        .connect_via_oauth(stack.customer_id)
        .await
        .contains("success"));
    let (_, other) = stack
        .admin(
            Method::POST,
            "/api/customers",
            Some(serde_json::json!({ "name": "Someone Else" })),
        )
        .await;
    let other: Uuid = other["id"].as_str().unwrap().parse().unwrap();
    assert!(stack
        .connect_via_oauth(other)
        .await
        .contains("error=oauth_failed"));
    let owner: Uuid = sqlx::query_scalar("SELECT customer_id FROM instagram_credentials")
        .fetch_one(&stack.db().await)
        .await
        .unwrap();
    assert_eq!(owner, stack.customer_id);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_routes_refuse_a_missing_or_wrong_token_and_bad_ids() {
    let stack = Stack::start(Options::default()).await;
    let client = omnidm_sim::webhook::http_client();
    let id = Uuid::new_v4();
    let routes = [
        (Method::POST, "/api/customers".to_owned()),
        (Method::POST, "/api/instagram/auth/url".to_owned()),
        (Method::GET, format!("/api/instagram/status?customerId={id}")),
        (
            Method::DELETE,
            format!("/api/instagram/connection?customerId={id}"),
        ),
        (Method::GET, format!("/api/conversations?customerId={id}")),
        (Method::GET, format!("/api/conversations/{id}/messages")),
        (Method::POST, format!("/api/conversations/{id}/pause")),
        (Method::POST, format!("/api/conversations/{id}/resume")),
    ];
    for (method, path) in &routes {
        for auth in [
            None,
            Some("Bearer wrong-token-wrong-token"),
            Some("Basic abc"),
            Some("Bearer "),
        ] {
            let mut request = client.request(method.clone(), format!("{}{path}", stack.ingest_url));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {auth:?}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized");
        }
    }
    // SQL injection attempts through every id we accept: refused as malformed, nothing runs.
    for evil in ["1' OR '1'='1", "x;DROP TABLE customers;--", "%27"] {
        let encoded: String = evil.bytes().map(|b| format!("%{b:02X}")).collect();
        let (status, body) = stack
            .admin(
                Method::GET,
                &format!("/api/instagram/status?customerId={encoded}"),
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_id")),
            "{evil}"
        );
        let (status, _) = stack
            .admin(
                Method::GET,
                &format!("/api/conversations/{encoded}/messages"),
                None,
            )
            .await;
        assert!(status == 400 || status == 404, "{evil}: {status}");
    }
    let (status, body) = stack
        .admin(
            Method::POST,
            "/api/customers",
            Some(serde_json::json!({ "name": "" })),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_name")));
    let (status, _) = stack
        .admin(
            Method::GET,
            &format!("/api/instagram/status?customerId={id}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let customers: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&stack.db().await)
        .await
        .unwrap();
    assert_eq!(customers, 1, "only the seeded customer exists");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conversations_can_be_read_paused_and_resumed() {
    let stack = Stack::start(Options::default()).await;
    let customer_user = user();
    stack.dm(&customer_user, &mid(), "first question", now_ms()).await;
    assert!(eventually(LONG, || async { stack.sent_to(&customer_user).len() == 1 }).await);

    let (status, body) = stack
        .admin(
            Method::GET,
            &format!("/api/conversations?customerId={}", stack.customer_id),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let conversation = body["conversations"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["conversations"][0]["externalUserId"], customer_user.as_str());
    let (_, body) = stack
        .admin(
            Method::GET,
            &format!("/api/conversations/{conversation}/messages"),
            None,
        )
        .await;
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["direction"], "inbound");
    assert_eq!(messages[0]["text"], "first question");
    assert!(messages
        .iter()
        .any(|m| m["direction"] == "outbound" && m["author"] == "ai"));

    let (status, body) = stack
        .admin(
            Method::POST,
            &format!("/api/conversations/{conversation}/pause"),
            Some(serde_json::json!({ "minutes": 30 })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["aiPausedUntil"].is_string());
    stack.dm(&customer_user, &mid(), "while paused", now_ms()).await;
    let db = stack.db().await;
    assert!(
        eventually(LONG, || async {
            sqlx::query_scalar::<_, String>("SELECT status FROM messages WHERE text = 'while paused'")
                .fetch_optional(&db)
                .await
                .unwrap()
                .as_deref()
                == Some("ignored")
        })
        .await
    );
    assert_eq!(stack.sent_to(&customer_user).len(), 1, "paused: not answered");

    let (status, body) = stack
        .admin(
            Method::POST,
            &format!("/api/conversations/{conversation}/resume"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(body["aiPausedUntil"].is_null());
    stack.dm(&customer_user, &mid(), "after resume", now_ms()).await;
    assert!(eventually(LONG, || async { stack.sent_to(&customer_user).len() == 2 }).await);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disconnect_unsubscribes_deletes_the_token_and_keeps_history() {
    let stack = Stack::start(unconnected()).await;
    stack.sim.set_oauth_accounts(vec![stack.account.clone()]);
    assert!(stack
        .connect_via_oauth(stack.customer_id)
        .await
        .contains("success"));
    let customer_user = user();
    stack.dm(&customer_user, &mid(), "hi", now_ms()).await;
    assert!(eventually(LONG, || async { stack.sent_to(&customer_user).len() == 1 }).await);

    let (status, body) = stack
        .admin(
            Method::DELETE,
            &format!("/api/instagram/connection?customerId={}", stack.customer_id),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disconnected"][0]["unsubscribed"], true);
    assert!(stack
        .sim
        .subscriptions(&stack.account.page_id)
        .unwrap_or_default()
        .is_empty());
    let (token, status): (Option<String>, String) =
        sqlx::query_as("SELECT access_token_enc, status FROM instagram_credentials WHERE account_id = $1")
            .bind(&stack.account.ig_account_id)
            .fetch_one(&stack.db().await)
            .await
            .unwrap();
    assert_eq!((token, status.as_str()), (None, "disconnected"));
    let (_, body) = stack
        .admin(
            Method::GET,
            &format!("/api/conversations?customerId={}", stack.customer_id),
            None,
        )
        .await;
    assert_eq!(body["conversations"].as_array().unwrap().len(), 1, "history kept");
    let (_, body) = stack
        .admin(
            Method::GET,
            &format!("/api/instagram/status?customerId={}", stack.customer_id),
            None,
        )
        .await;
    assert_eq!(body["connected"], false);

    // Nothing is answered for a disconnected account.
    stack.dm(&customer_user, &mid(), "anyone there?", now_ms()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stack.sent_to(&customer_user).len(), 1);
    let (status, _) = stack
        .admin(
            Method::DELETE,
            &format!("/api/instagram/connection?customerId={}", stack.customer_id),
            None,
        )
        .await;
    assert_eq!(status, 404, "nothing left to disconnect");

    // Connecting again brings it back.
    assert!(stack
        .connect_via_oauth(stack.customer_id)
        .await
        .contains("success"));
    assert_eq!(stack.credential_status().await.as_deref(), Some("active"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnecting_a_dead_token_sends_the_parked_reply_without_asking_the_ai_again() {
    let stack = Stack::start(Options::default()).await;
    stack.sim.set_oauth_accounts(vec![stack.account.clone()]);
    stack
        .sim
        .push_faults(FaultTarget::Send, Fault::token_expired(), 1);
    let customer_user = user();
    stack
        .dm(&customer_user, &mid(), "where is my order?", now_ms())
        .await;
    assert!(
        eventually(LONG, || async {
            stack.credential_status().await.as_deref() == Some("reauth_required")
        })
        .await
    );
    let db = stack.db().await;
    assert!(
        eventually(LONG, || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM messages WHERE status = 'parked'")
                .fetch_one(&db)
                .await
                .unwrap()
                > 0
        })
        .await
    );
    assert!(stack.sent_to(&customer_user).is_empty());
    let ai_calls = stack.sim.ai_requests().len();

    let landing = stack.connect_via_oauth(stack.customer_id).await;
    assert!(landing.contains("success=instagram_connected"), "{landing}");
    assert!(
        eventually(LONG, || async { stack.sent_to(&customer_user).len() == 1 }).await,
        "the parked reply goes out after the reconnect"
    );
    assert_eq!(
        stack.sim.ai_requests().len(),
        ai_calls,
        "the stored answer is sent, not a new one"
    );
    assert_eq!(stack.credential_status().await.as_deref(), Some("active"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.sent_to(&customer_user).len(), 1, "sent once");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lifecycle_job_flags_dead_and_expiring_tokens_and_exports_counts() {
    let stack = Stack::start(Options {
        worker_env: vec![("TOKEN_CHECK_INTERVAL_SECONDS", "1".into())],
        ..Options::default()
    })
    .await;
    let db = stack.db().await;
    // A token that expires in three days (it cannot be refreshed: Facebook Login) is `expiring`.
    sqlx::query("UPDATE instagram_credentials SET token_expires_at = now() + interval '3 days'")
        .execute(&db)
        .await
        .unwrap();
    assert!(
        eventually(LONG, || async {
            stack.credential_status().await.as_deref() == Some("expiring")
        })
        .await
    );
    // Meta invalidates the token (password change): 190 on the next check.
    stack.sim.revoke_token(&stack.account.page_token);
    assert!(
        eventually(LONG, || async {
            stack.credential_status().await.as_deref() == Some("reauth_required")
        })
        .await
    );
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM account_events ORDER BY created_at")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(kinds.contains(&"expiring".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"reauth_required".to_owned()), "{kinds:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotate_keys_reencrypts_every_token_and_the_fleet_keeps_sending() {
    let mut stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let old_key = stack.key.clone();
    let new_key = generate_key_base64();
    let rotate = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("rotate-keys")
        .envs(stack.worker_env())
        .env("ENCRYPTION_KEY", &new_key)
        .env("ENCRYPTION_KEYS_PREVIOUS", &old_key)
        .output()
        .await
        .unwrap();
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let stdout = String::from_utf8_lossy(&rotate.stdout);
    assert!(stdout.contains("re-encrypted 1 token"), "{stdout}");
    assert!(!stdout.contains(&stack.account.page_token));

    let stored: String = sqlx::query_scalar("SELECT access_token_enc FROM instagram_credentials")
        .fetch_one(&stack.db().await)
        .await
        .unwrap();
    let aad = token_associated_data(stack.credential_id);
    let new_only = Keyring::new(Key::from_base64(&new_key).unwrap(), vec![]);
    let old_only = Keyring::new(Key::from_base64(&old_key).unwrap(), vec![]);
    assert_eq!(
        new_only.decrypt(&stored, aad.as_bytes()).unwrap().expose_secret(),
        stack.account.page_token
    );
    assert!(old_only.decrypt(&stored, aad.as_bytes()).is_err());

    // Running it again changes nothing.
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("rotate-keys")
        .envs(stack.worker_env())
        .env("ENCRYPTION_KEY", &new_key)
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("re-encrypted 0 token(s)"));

    // A worker with only the new key answers.
    stack.key = new_key;
    stack.start_worker().await;
    let customer_user = user();
    stack.dm(&customer_user, &mid(), "after rotation", now_ms()).await;
    assert!(eventually(LONG, || async { stack.sent_to(&customer_user).len() == 1 }).await);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instagram_login_connects_answers_refreshes_and_flags_an_expired_token() {
    let stack = Stack::start(Options {
        seed_credential: false,
        login: omnidm_shared::config::MetaLogin::Instagram,
        worker_env: vec![("TOKEN_CHECK_INTERVAL_SECONDS", "1".into())],
        ..Options::default()
    })
    .await;
    stack.sim.set_oauth_accounts(vec![stack.account.clone()]);
    let url = stack.auth_url(stack.customer_id).await;
    assert!(url.starts_with(&stack.sim.instagram_authorize_url()), "{url}");
    assert_eq!(
        query_param(&url, "scope").as_deref(),
        Some("instagram_business_basic,instagram_business_manage_messages")
    );
    let callback = stack.hop(&url).await;
    assert!(callback.ends_with("#_"), "Meta's suffix: {callback}");
    let landing = stack.hop(&callback).await;
    assert!(landing.contains("success=instagram_connected"), "{landing}");

    let db = stack.db().await;
    let (id, login, page_id, expires, stored): (
        Uuid,
        String,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
        String,
    ) = sqlx::query_as(
        "SELECT id, login, page_id, token_expires_at, access_token_enc FROM instagram_credentials
         WHERE account_id = $1",
    )
    .bind(&stack.account.ig_account_id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((login.as_str(), page_id), ("instagram", None));
    let days = (expires.unwrap() - chrono::Utc::now()).num_days();
    assert!((58..=60).contains(&days), "a long-lived token: {days} days");
    let keyring = Keyring::new(Key::from_base64(&stack.key).unwrap(), vec![]);
    let issued = stack.sim.instagram_tokens(&stack.account.ig_account_id);
    let token = keyring
        .decrypt(&stored, token_associated_data(id).as_bytes())
        .unwrap();
    assert_eq!(
        Some(token.expose_secret()),
        issued.last().map(String::as_str),
        "the long-lived token is stored, not the short-lived one"
    );
    assert!(stack.sim.subscriptions(&stack.account.page_id).is_some());

    let customer_user = user();
    stack
        .dm(&customer_user, &mid(), "hi from instagram login", now_ms())
        .await;
    assert!(eventually(LONG, || async { stack.sent_to(&customer_user).len() == 1 }).await);
    assert!(stack
        .sim
        .graph_requests()
        .iter()
        .any(|r| r.path == "ig:/me/messages"));

    // Five days before expiry, a day after the last refresh: the lifecycle job refreshes it.
    sqlx::query(
        "UPDATE instagram_credentials SET token_expires_at = now() + interval '5 days',
             token_refreshed_at = now() - interval '2 days'",
    )
    .execute(&db)
    .await
    .unwrap();
    assert!(
        eventually(LONG, || async {
            stack.sim.instagram_tokens(&stack.account.ig_account_id).len() > issued.len()
        })
        .await,
        "refreshed"
    );
    assert!(
        eventually(LONG, || async {
            let expires: Option<chrono::DateTime<chrono::Utc>> =
                sqlx::query_scalar("SELECT token_expires_at FROM instagram_credentials")
                    .fetch_one(&db)
                    .await
                    .unwrap();
            expires.is_some_and(|e| (e - chrono::Utc::now()).num_days() >= 58)
        })
        .await
    );
    let refreshed = stack
        .sim
        .instagram_tokens(&stack.account.ig_account_id)
        .last()
        .cloned()
        .unwrap();
    let stored: String = sqlx::query_scalar("SELECT access_token_enc FROM instagram_credentials")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        keyring
            .decrypt(&stored, token_associated_data(id).as_bytes())
            .unwrap()
            .expose_secret(),
        refreshed
    );

    // Meta expires it: the next check flags the account.
    stack.sim.expire_token(&refreshed);
    assert!(
        eventually(LONG, || async {
            stack.credential_status().await.as_deref() == Some("reauth_required")
        })
        .await
    );
    stack.stop().await;
}
