//! Who speaks, and when, end to end against the real PostgreSQL and RabbitMQ with the sim as Meta and
//! the AI: the reply policy per message kind, escalation to a person, the Handover Protocol, operator
//! replies under Meta's windows, replays, Messenger, and two businesses side by side
//! (docs/conversation.md).

mod support;

use omnidm_shared::policy::DEFAULT_UNSUPPORTED_REPLY;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{eventually, mid, now_ms, user, Options, Stack, APP_ID};

const WAIT: Duration = Duration::from_secs(20);

/// A webhook body with one event, in `messaging[]` or `standby[]`.
fn body(object: &str, entry_id: &str, event: Value, standby: bool) -> Vec<u8> {
    let array = if standby { "standby" } else { "messaging" };
    serde_json::to_vec(&json!({
        "object": object,
        "entry": [{"id": entry_id, "time": now_ms(), array: [event]}],
    }))
    .unwrap()
}

/// A customer's `message` event to the stack's account.
fn message(stack: &Stack, user: &str, message: Value) -> Vec<u8> {
    let account = &stack.account.ig_account_id;
    body(
        "instagram",
        account,
        json!({"sender": {"id": user}, "recipient": {"id": account}, "timestamp": now_ms(), "message": message}),
        false,
    )
}

/// A handover event from `user`'s thread.
fn handover(stack: &Stack, user: &str, event: Value) -> Vec<u8> {
    let account = &stack.account.ig_account_id;
    let mut wire = json!({"sender": {"id": user}, "recipient": {"id": account}, "timestamp": now_ms()});
    for (key, value) in event.as_object().unwrap() {
        wire[key] = value.clone();
    }
    body("instagram", account, wire, false)
}

async fn row(stack: &Stack, mid: &str) -> Option<(String, Option<String>, String)> {
    sqlx::query_as("SELECT status, status_reason, kind FROM messages WHERE external_message_id = $1")
        .bind(mid)
        .fetch_optional(&stack.db().await)
        .await
        .unwrap()
}

async fn state(stack: &Stack, user: &str) -> Option<String> {
    sqlx::query_scalar("SELECT state FROM conversations WHERE external_user_id = $1")
        .bind(user)
        .fetch_optional(&stack.db().await)
        .await
        .unwrap()
}

async fn conversation_id(stack: &Stack, user: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM conversations WHERE external_user_id = $1")
        .bind(user)
        .fetch_one(&stack.db().await)
        .await
        .unwrap()
}

/// Waits until the message is stored with `status`.
async fn until_status(stack: &Stack, mid: &str, status: &str) -> bool {
    eventually(WAIT, || async {
        row(stack, mid).await.is_some_and(|r| r.0 == status)
    })
    .await
}

#[tokio::test]
async fn hearts_like_stickers_and_emoji_are_recorded_but_a_question_is_answered() {
    let stack = Stack::start(Options::default()).await;
    let customer = user();
    let (heart, sticker, emoji, question) = (mid(), mid(), mid(), mid());
    let posts = [
        message(
            &stack,
            &customer,
            json!({"mid": heart, "attachments": [{"type": "like_heart"}]}),
        ),
        message(
            &stack,
            &customer,
            json!({"mid": sticker, "attachments": [{"type": "image", "payload": {"url": "https://cdn/x.png", "sticker_id": 369239263222822u64}}]}),
        ),
        message(&stack, &customer, json!({"mid": emoji, "text": "👍🏽"})),
    ];
    for post in posts {
        assert_eq!(stack.post(post).await, 200);
    }
    for (id, kind) in [(&heart, "like"), (&sticker, "like"), (&emoji, "emoji")] {
        assert!(until_status(&stack, id, "ignored").await, "{kind} recorded");
        let (_, reason, stored_kind) = row(&stack, id).await.unwrap();
        assert_eq!((reason.as_deref(), stored_kind.as_str()), (Some("policy"), kind));
    }
    stack
        .dm(&customer, &question, "Do you ship to Lyon?", now_ms())
        .await;
    let sent = stack
        .sim
        .wait_for_sent(1, WAIT)
        .await
        .expect("the question is answered");
    assert_eq!(
        sent[0].text, "Re: Do you ship to Lyon?",
        "only the question reaches the AI"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        stack.sent_to(&customer).len(),
        1,
        "signals got no reply of their own"
    );
    stack.stop().await;
}

#[tokio::test]
async fn content_we_cannot_open_gets_a_request_to_type_it_and_the_ai_is_never_asked() {
    let stack = Stack::start(Options::default()).await;
    let customer = user();
    let unsupported = mid();
    let post = message(
        &stack,
        &customer,
        json!({"mid": unsupported, "is_unsupported": true}),
    );
    assert_eq!(stack.post(post).await, 200);
    let sent = stack.sim.wait_for_sent(1, WAIT).await.expect("a fixed answer");
    assert_eq!(sent[0].text, DEFAULT_UNSUPPORTED_REPLY);
    assert!(until_status(&stack, &unsupported, "answered").await);
    assert!(
        stack.sim.ai_requests().is_empty(),
        "the AI must not guess at the content"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_story_mention_is_recorded_by_default_and_thanked_once_the_business_says_so() {
    let stack = Stack::start(Options::default()).await;
    let (fan, other_fan) = (user(), user());
    let mention = |mid: &str| json!({"mid": mid, "attachments": [{"type": "story_mention", "payload": {"url": "https://cdn/s"}}]});
    let first = mid();
    assert_eq!(stack.post(message(&stack, &fan, mention(&first))).await, 200);
    assert!(until_status(&stack, &first, "ignored").await);

    let path = format!("/api/customers/{}", stack.customer_id);
    let change = json!({"replyPolicy": {"storyMention": {"reply": "Thank you for the mention!"}}});
    let (status, customer) = stack.admin(reqwest::Method::PATCH, &path, Some(change)).await;
    assert_eq!(status, 200, "{customer}");
    assert_eq!(
        customer["replyPolicy"]["storyMention"],
        json!({"reply": "Thank you for the mention!"})
    );
    assert_eq!(
        customer["replyPolicy"]["like"], "record",
        "the rest keeps its defaults"
    );
    // The worker reuses an account's settings for up to a second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let second = mid();
    assert_eq!(
        stack.post(message(&stack, &other_fan, mention(&second))).await,
        200
    );
    let sent = stack.sim.wait_for_sent(1, WAIT).await.expect("thanked");
    assert_eq!(sent[0].text, "Thank you for the mention!");
    assert_eq!(sent[0].recipient_id, other_fan);
    assert!(stack.sim.ai_requests().is_empty());

    let refused = json!({"replyPolicy": {"unsupported": "ai"}});
    let (status, error) = stack.admin(reqwest::Method::PATCH, &path, Some(refused)).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_reply_policy"))
    );
    stack.stop().await;
}

/// A business's notification endpoint: records every request; answers 500 to the first `failures`.
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<(axum::http::HeaderMap, axum::body::Bytes)>>>,
    failures: Arc<Mutex<u32>>,
}

impl Receiver {
    async fn start(failures: u32) -> (Self, String) {
        let receiver = Receiver::default();
        *receiver.failures.lock().unwrap() = failures;
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hooks/omnidm",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    state.received.lock().unwrap().push((headers, body));
                    let mut failures = state.failures.lock().unwrap();
                    if *failures > 0 {
                        *failures -= 1;
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/omnidm", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn received(&self) -> Vec<(axum::http::HeaderMap, axum::body::Bytes)> {
        self.received.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn asking_for_a_person_hands_over_passes_the_thread_notifies_and_keeps_the_bot_quiet_until_resumed() {
    let stack = Stack::start(Options::default()).await;
    let (receiver, url) = Receiver::start(1).await;
    let path = format!("/api/customers/{}", stack.customer_id);
    let change = json!({"notifyUrl": url, "handoffMessage": "A person from Acme will answer you here."});
    let (status, settings) = stack.admin(reqwest::Method::PATCH, &path, Some(change)).await;
    assert_eq!(status, 200, "{settings}");
    let secret = settings["notifySecret"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    let (_, again) = stack.admin(reqwest::Method::GET, &path, None).await;
    assert!(again.get("notifySecret").is_none() && again["hasNotifySecret"] == true);
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let customer = user();
    stack
        .dm(&customer, &mid(), "I want to talk to a human please", now_ms())
        .await;
    let sent = stack
        .sim
        .wait_for_sent(1, WAIT)
        .await
        .expect("the handoff message");
    assert_eq!(sent[0].text, "A person from Acme will answer you here.");
    assert!(
        eventually(WAIT, || async {
            state(&stack, &customer).await.as_deref() == Some("escalated")
        })
        .await
    );
    assert!(stack.sim.ai_requests()[0]
        .tools
        .contains(&"handoff_to_human".to_owned()));
    assert!(
        eventually(WAIT, || async {
            stack.sim.thread_control_calls().iter().any(|c| {
                c.action == "pass"
                    && c.recipient_id == customer
                    && c.target_app_id.as_deref() == Some(omnidm_sim::PAGE_INBOX_APP_ID)
            })
        })
        .await,
        "the thread goes to the Page inbox"
    );

    // Delivered on the second attempt, signed, the same delivery id both times.
    assert!(
        eventually(Duration::from_secs(30), || async {
            receiver.received().len() >= 2
        })
        .await
    );
    let received = receiver.received();
    let (headers, body) = &received[1];
    assert_eq!(headers["x-omnidm-delivery"], received[0].0["x-omnidm-delivery"]);
    assert_eq!(headers["x-omnidm-event"], "conversation.escalated");
    assert_eq!(
        headers["x-omnidm-signature"].to_str().unwrap(),
        omnidm_shared::signature::sign(secret.as_bytes(), body)
    );
    let notification: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(notification["externalUserId"], customer.as_str());
    assert_eq!(notification["reason"], "customer asked for a person");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM account_events WHERE kind = 'escalated'")
        .fetch_one(&stack.db().await)
        .await
        .unwrap();
    assert_eq!(events, 1);

    // Quiet while a person has it.
    let waiting = mid();
    stack.dm(&customer, &waiting, "hello?", now_ms()).await;
    assert!(until_status(&stack, &waiting, "ignored").await);
    assert_eq!(
        row(&stack, &waiting).await.unwrap().1.as_deref(),
        Some("escalated")
    );

    // Resumed by a person: the thread comes back, and the bot answers again.
    let id = conversation_id(&stack, &customer).await;
    let (status, resumed) = stack
        .admin(
            reqwest::Method::POST,
            &format!("/api/conversations/{id}/resume"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(
        (resumed["state"].as_str(), resumed["threadTaken"].as_bool()),
        (Some("bot"), Some(true))
    );
    assert!(stack
        .sim
        .thread_control_calls()
        .iter()
        .any(|c| c.action == "take"));
    stack
        .dm(&customer, &mid(), "thanks, and the price?", now_ms())
        .await;
    let sent = stack.sim.wait_for_sent(2, WAIT).await.expect("answered again");
    assert_eq!(sent[1].text, "Re: thanks, and the price?");
    stack.stop().await;
}

#[tokio::test]
async fn the_handover_protocol_moves_the_thread_and_we_never_send_into_another_apps_thread() {
    let stack = Stack::start(Options::default()).await;
    let customer = user();
    let helpdesk = "999000111";
    // Another app takes the thread: the bot keeps quiet.
    let take = json!({"take_thread_control": {"previous_owner_app_id": APP_ID, "new_owner_app_id": helpdesk, "metadata": "agent"}});
    assert_eq!(stack.post(handover(&stack, &customer, take)).await, 200);
    assert!(
        eventually(WAIT, || async {
            state(&stack, &customer).await.as_deref() == Some("elsewhere")
        })
        .await
    );
    let quiet = mid();
    stack.dm(&customer, &quiet, "anyone there?", now_ms()).await;
    assert!(until_status(&stack, &quiet, "ignored").await);
    assert_eq!(
        row(&stack, &quiet).await.unwrap().1.as_deref(),
        Some("thread_elsewhere")
    );

    // Passed back to us: answered again.
    let pass = json!({"pass_thread_control": {"previous_owner_app_id": helpdesk, "new_owner_app_id": APP_ID, "metadata": "done"}});
    assert_eq!(stack.post(handover(&stack, &customer, pass)).await, 200);
    assert!(
        eventually(WAIT, || async {
            state(&stack, &customer).await.as_deref() == Some("bot")
        })
        .await
    );
    stack.dm(&customer, &mid(), "still there?", now_ms()).await;
    assert!(stack.sim.wait_for_sent(1, WAIT).await.is_some());

    // Another app asks for the thread: it gets it.
    let request =
        json!({"request_thread_control": {"requested_owner_app_id": helpdesk, "metadata": "escalate"}});
    assert_eq!(stack.post(handover(&stack, &customer, request)).await, 200);
    assert!(
        eventually(WAIT, || async {
            stack.sim.thread_control_calls().iter().any(|c| {
                c.action == "pass"
                    && c.recipient_id == customer
                    && c.target_app_id.as_deref() == Some(helpdesk)
            })
        })
        .await
    );
    assert!(
        eventually(WAIT, || async {
            state(&stack, &customer).await.as_deref() == Some("elsewhere")
        })
        .await
    );

    // A customer's message on the standby channel: another app has the thread; recorded, not answered.
    let bystander = user();
    let standby_mid = mid();
    let account = stack.account.ig_account_id.clone();
    let standby = body(
        "instagram",
        &account,
        json!({"sender": {"id": bystander}, "recipient": {"id": account}, "timestamp": now_ms(),
               "message": {"mid": standby_mid, "text": "hello?"}}),
        true,
    );
    assert_eq!(stack.post(standby).await, 200);
    assert!(until_status(&stack, &standby_mid, "ignored").await);
    assert_eq!(
        row(&stack, &standby_mid).await.unwrap().1.as_deref(),
        Some("standby")
    );
    assert_eq!(state(&stack, &bystander).await.as_deref(), Some("elsewhere"));

    // A thread we did not hear about: Meta refuses the send, and that is a state, not a retry.
    let stranger = user();
    stack
        .sim
        .set_thread_owner(&stack.account.ig_account_id, &stranger, Some(helpdesk.into()));
    let refused = mid();
    stack.dm(&stranger, &refused, "hi", now_ms()).await;
    assert!(
        eventually(WAIT, || async {
            state(&stack, &stranger).await.as_deref() == Some("elsewhere")
        })
        .await
    );
    let failed: (String, Option<String>) = sqlx::query_as(
        "SELECT m.status, m.status_reason FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE c.external_user_id = $1 AND m.direction = 'outbound'",
    )
    .bind(&stranger)
    .fetch_one(&stack.db().await)
    .await
    .unwrap();
    assert_eq!(failed, ("failed".into(), Some("thread_elsewhere".into())));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.sim.rejected_sends().len(),
        1,
        "never retried into another app's thread"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_operator_reply_goes_out_under_metas_windows_pauses_the_bot_and_its_echo_is_ours() {
    let stack = Stack::start(Options::default()).await;
    let customer = user();
    stack
        .dm(&customer, &mid(), "is the blue one in stock?", now_ms())
        .await;
    stack
        .sim
        .wait_for_sent(1, WAIT)
        .await
        .expect("the bot answers first");
    let id = conversation_id(&stack, &customer).await;
    let reply = |text: &str| json!({ "text": text });
    let path = format!("/api/conversations/{id}/messages");

    let (status, stored) = stack
        .admin(reqwest::Method::POST, &path, Some(reply("Yes, two left. — Anna")))
        .await;
    assert_eq!(status, 202, "{stored}");
    assert_eq!(
        (
            stored["message"]["author"].as_str(),
            stored["message"]["status"].as_str()
        ),
        (Some("human"), Some("queued"))
    );
    let sent = stack.sim.wait_for_sent(2, WAIT).await.expect("sent by a worker");
    assert_eq!(
        (
            sent[1].text.as_str(),
            sent[1].messaging_type.as_deref(),
            sent[1].tag.as_deref()
        ),
        ("Yes, two left. — Anna", Some("RESPONSE"), None)
    );
    assert_eq!(state(&stack, &customer).await.as_deref(), Some("paused"));
    let human_rows = || async {
        sqlx::query_as::<_, (String,)>(
            "SELECT m.status FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE c.external_user_id = $1 AND m.author = 'human'",
        )
        .bind(&customer)
        .fetch_all(&stack.db().await)
        .await
        .unwrap()
    };
    assert!(
        eventually(WAIT, || async {
            human_rows().await == [("delivered".to_owned(),)]
        })
        .await,
        "the echo marks our row delivered instead of adding a person's message"
    );
    let paused = mid();
    stack.dm(&customer, &paused, "great, thanks", now_ms()).await;
    assert!(
        until_status(&stack, &paused, "ignored").await,
        "the bot stays quiet"
    );

    // Three days after the customer's last message: only a person, with the HUMAN_AGENT tag.
    let set_last_inbound = |days: i64| {
        let pool_url = stack.database_url.clone();
        async move {
            let pool = sqlx::PgPool::connect(&pool_url).await.unwrap();
            sqlx::query(
                "UPDATE conversations SET last_inbound_at = now() - make_interval(days => $2) WHERE id = $1",
            )
            .bind(id)
            .bind(days as i32)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    set_last_inbound(3).await;
    let (status, _) = stack
        .admin(reqwest::Method::POST, &path, Some(reply("Still interested?")))
        .await;
    assert_eq!(status, 202);
    let sent = stack.sim.wait_for_sent(3, WAIT).await.expect("sent with the tag");
    assert_eq!(
        (sent[2].messaging_type.as_deref(), sent[2].tag.as_deref()),
        (Some("MESSAGE_TAG"), Some("HUMAN_AGENT"))
    );

    set_last_inbound(8).await;
    let (status, error) = stack
        .admin(reqwest::Method::POST, &path, Some(reply("Hello?")))
        .await;
    assert_eq!((status, error["error"].as_str()), (409, Some("outside_window")));
    let (status, _) = stack
        .admin(reqwest::Method::POST, &path, Some(reply("   ")))
        .await;
    assert_eq!(status, 400);
    stack.stop().await;
}

#[tokio::test]
async fn a_replayed_postback_without_mid_a_late_older_edit_and_reordered_reactions_change_nothing() {
    let stack = Stack::start(Options::default()).await;
    let customer = user();
    let account = stack.account.ig_account_id.clone();
    let tapped = json!({"sender": {"id": customer}, "recipient": {"id": account}, "timestamp": 1_700_000_000_000i64,
                        "postback": {"title": "Opening hours", "payload": "HOURS"}});
    for _ in 0..3 {
        assert_eq!(
            stack
                .post(body("instagram", &account, tapped.clone(), false))
                .await,
            200
        );
    }
    stack.sim.wait_for_sent(1, WAIT).await.expect("answered");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        stack.sent_to(&customer),
        ["Re: Opening hours"],
        "one tap, one answer"
    );

    let edited = mid();
    stack
        .dm(&customer, &edited, "I want size 40", now_ms() - 10_000)
        .await;
    stack.sim.wait_for_sent(2, WAIT).await.expect("answered");
    let edit = |text: &str, at: i64| {
        json!({"sender": {"id": customer}, "recipient": {"id": account}, "timestamp": at,
               "message_edit": {"mid": edited, "text": text, "num_edit": 1}})
    };
    let newer = edit("I want size 42", now_ms());
    let older = edit("I want size 41", now_ms() - 5_000);
    assert_eq!(stack.post(body("instagram", &account, newer, false)).await, 200);
    let text = || async {
        sqlx::query_scalar::<_, String>("SELECT text FROM messages WHERE external_message_id = $1")
            .bind(&edited)
            .fetch_one(&stack.db().await)
            .await
            .unwrap()
    };
    assert!(eventually(WAIT, || async { text().await == "I want size 42" }).await);
    assert_eq!(stack.post(body("instagram", &account, older, false)).await, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        text().await,
        "I want size 42",
        "an older edit delivered late does not win"
    );

    // Reactions: the newest wins whatever order they arrive in, and a redelivery changes nothing.
    let reaction = |action: &str, at: i64| {
        json!({"sender": {"id": customer}, "recipient": {"id": account}, "timestamp": at,
               "reaction": {"mid": edited, "action": action, "reaction": "love", "emoji": "❤️"}})
    };
    let reactions = || async {
        sqlx::query_scalar::<_, Value>("SELECT reactions FROM messages WHERE external_message_id = $1")
            .bind(&edited)
            .fetch_one(&stack.db().await)
            .await
            .unwrap()
    };
    let now = now_ms();
    for event in [
        reaction("react", now),
        reaction("react", now),
        reaction("unreact", now - 3_000),
    ] {
        assert_eq!(stack.post(body("instagram", &account, event, false)).await, 200);
    }
    assert!(
        eventually(WAIT, || async {
            reactions().await.as_array().is_some_and(|r| r.len() == 1)
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        reactions().await[0]["reaction"],
        "love",
        "an older unreact delivered late does not win"
    );
    let unreact = reaction("unreact", now + 1_000);
    assert_eq!(stack.post(body("instagram", &account, unreact, false)).await, 200);
    assert!(eventually(WAIT, || async { reactions().await == json!([]) }).await);
    stack.stop().await;
}

#[tokio::test]
async fn messenger_dms_are_their_own_channel_and_answered_only_when_the_business_turned_messenger_on() {
    let stack = Stack::start(Options::default()).await;
    let page = stack.account.page_id.clone();
    let psid = user();
    stack.sim.register_messenger_user(&psid);
    let dm = |mid: &str, text: &str| {
        omnidm_sim::webhook::payload::messenger_text_message(&page, &psid, mid, text, now_ms())
    };
    let ignored = mid();
    assert_eq!(stack.post(dm(&ignored, "hello from Messenger")).await, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        row(&stack, &ignored).await.is_none(),
        "not stored while Messenger is off"
    );
    assert!(stack.sim.sent_messages().is_empty());

    let path = format!("/api/customers/{}", stack.customer_id);
    let (status, _) = stack
        .admin(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"messengerEnabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let answered = mid();
    assert_eq!(stack.post(dm(&answered, "do you deliver?")).await, 200);
    let sent = stack
        .sim
        .wait_for_sent(1, WAIT)
        .await
        .expect("answered on Messenger");
    assert_eq!(
        (sent[0].recipient_id.as_str(), sent[0].text.as_str()),
        (psid.as_str(), "Re: do you deliver?")
    );
    let channel: String = sqlx::query_scalar("SELECT channel FROM conversations WHERE external_user_id = $1")
        .bind(&psid)
        .fetch_one(&stack.db().await)
        .await
        .unwrap();
    assert_eq!(channel, "messenger");
    assert!(until_status(&stack, &answered, "answered").await);
    // The Messenger echo is recognised as ours: no person's message, no pause.
    assert!(
        eventually(WAIT, || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
                 WHERE c.external_user_id = $1 AND m.author = 'ai' AND m.status = 'delivered'",
            )
            .bind(&psid)
            .fetch_one(&stack.db().await)
            .await
            .unwrap()
                == 1
        })
        .await
    );
    assert_eq!(state(&stack, &psid).await.as_deref(), Some("bot"));
    stack.stop().await;
}

#[tokio::test]
async fn two_businesses_whose_accounts_write_to_each_other_never_cross_talk() {
    let stack = Stack::start(Options {
        workers: 2,
        ..Options::default()
    })
    .await;
    let (other_customer, other) = stack
        .seed_second_tenant("Bolt", "You are Bolt's assistant.")
        .await;
    let acme = stack.account.ig_account_id.clone();
    let bolt = other.ig_account_id.clone();
    // One message between the two accounts: an inbound DM of Bolt's and, under the same mid, an echo
    // of Acme's (Acme's person wrote it).
    let shared_mid = mid();
    let between =
        omnidm_sim::webhook::payload::text_message(&bolt, &acme, &shared_mid, "hi Bolt, it's Acme", now_ms());
    let echo = omnidm_sim::webhook::payload::echo(&acme, &bolt, &shared_mid, "hi Bolt, it's Acme", now_ms());
    assert_eq!(stack.post(between).await, 200);
    assert_eq!(stack.post(echo).await, 200);
    // And ordinary customers of both, interleaved.
    let customers: Vec<(String, String)> = (0..10)
        .map(|i| (user(), if i % 2 == 0 { acme.clone() } else { bolt.clone() }))
        .collect();
    for (customer, account) in &customers {
        let body = omnidm_sim::webhook::payload::text_message(account, customer, &mid(), "price?", now_ms());
        assert_eq!(stack.post(body).await, 200);
    }
    let sent = stack
        .sim
        .wait_for_sent(11, Duration::from_secs(30))
        .await
        .expect("every DM answered");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.sim.sent_messages().len(), 11, "each answered once");
    for (customer, account) in &customers {
        let to: Vec<_> = sent.iter().filter(|m| &m.recipient_id == customer).collect();
        assert_eq!(to.len(), 1);
        assert_eq!(
            &to[0].ig_account_id, account,
            "answered from its own business's account"
        );
    }
    assert!(
        sent.iter()
            .any(|m| m.recipient_id == acme && m.ig_account_id == bolt),
        "Bolt answers Acme"
    );
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT account_id, direction FROM messages WHERE external_message_id = $1 ORDER BY account_id",
    )
    .bind(&shared_mid)
    .fetch_all(&stack.db().await)
    .await
    .unwrap();
    let mut expected = vec![
        (acme.clone(), "outbound".to_owned()),
        (bolt.clone(), "inbound".to_owned()),
    ];
    expected.sort();
    assert_eq!(rows, expected, "one mid, stored once per account");
    let prompts: Vec<String> = stack
        .sim
        .ai_requests()
        .iter()
        .map(|r| r.messages[0].content.clone())
        .collect();
    assert_eq!(
        prompts.iter().filter(|p| p.contains("Bolt's")).count(),
        6,
        "Bolt's own prompt for its 6 DMs"
    );
    assert_eq!(prompts.iter().filter(|p| p.contains("Acme's")).count(), 5);
    let bolt_conversations: i64 =
        sqlx::query_scalar("SELECT count(*) FROM conversations WHERE customer_id = $1")
            .bind(other_customer)
            .fetch_one(&stack.db().await)
            .await
            .unwrap();
    assert_eq!(bolt_conversations, 6);
    stack.stop().await;
}

#[tokio::test]
async fn a_pause_that_has_run_out_is_the_bots_turn_for_every_change_of_state() {
    let stack = Stack::start(Options::default()).await;
    let customer = user();
    stack.dm(&customer, &mid(), "hello", now_ms()).await;
    stack.sim.wait_for_sent(1, WAIT).await.expect("answered");
    let id = conversation_id(&stack, &customer).await;
    // A person answered an hour ago; their pause ran out since.
    sqlx::query(
        "UPDATE conversations SET state = 'paused', state_reason = 'human_reply',
             ai_paused_until = now() - interval '1 minute' WHERE id = $1",
    )
    .bind(id)
    .execute(&stack.db().await)
    .await
    .unwrap();
    let (status, listed) = stack
        .admin(
            reqwest::Method::GET,
            &format!("/api/conversations?customerId={}", stack.customer_id),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["conversations"][0]["state"], "bot", "shown as the bot's");
    stack
        .dm(&customer, &mid(), "can I talk to a human?", now_ms())
        .await;
    assert!(
        eventually(WAIT, || async {
            state(&stack, &customer).await.as_deref() == Some("escalated")
        })
        .await,
        "the handoff applies as it would to a conversation in the bot state"
    );
    stack.stop().await;
}
