//! Every Meta payload shape in fixtures/meta, through the whole pipeline: what is answered (once), what is
//! only recorded (and how it changes what we stored), and what is ignored or unrouted, with its metric.

mod support;

use std::time::Duration;
use support::{eventually, mid, now_ms, user, Options, Stack};

const LONG: Duration = Duration::from_secs(30);

/// A fixture made real: placeholders replaced by the stack's account, a user and a message id, and the
/// documentation's 2017–2019 timestamps moved to now (keeping their differences), since replies are
/// ordered by them.
fn instantiate(name: &str, account: &str, user: &str, mid: &str) -> Vec<u8> {
    let path = format!("{}/../fixtures/meta/{name}", env!("CARGO_MANIFEST_DIR"));
    let now = now_ms();
    let mut text = std::fs::read_to_string(path).unwrap();
    for (placeholder, value) in [
        ("\"<TIME_NOTIFICATION_WAS_SENT>\"", now.to_string()),
        ("\"<TIME_WEBHOOK_WAS_TRIGGERED>\"", now.to_string()),
        ("\"<NUMBER_OF_TIMES_MESSAGE_IS_EDITED>\"", "1".to_owned()),
        ("<USER_EDITED_MESSAGE>", "edited text".to_owned()),
        ("<YOUR_APP_USERS_INSTAGRAM_USER_ID>", account.to_owned()),
        ("<INSTAGRAM_SCOPED_ID>", user.to_owned()),
        ("<MESSAGE_ID>", mid.to_owned()),
        ("<IGSID>", user.to_owned()),
        ("<IGID>", account.to_owned()),
        ("IGSID", user.to_owned()),
        ("IGID", account.to_owned()),
        ("MESSAGE-ID", mid.to_owned()),
    ] {
        text = text.replace(placeholder, &value);
    }
    // 13-digit timestamps from the docs' era (15…) → now, differences kept.
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut base: Option<i64> = None;
    while let Some(start) = rest.find("15") {
        let digits = rest[start..].chars().take_while(char::is_ascii_digit).count();
        let boundary = start == 0 || !rest.as_bytes()[start - 1].is_ascii_digit();
        out.push_str(&rest[..start]);
        if digits == 13 && boundary {
            let old: i64 = rest[start..start + 13].parse().unwrap();
            let first = *base.get_or_insert(old);
            out.push_str(&(now + (old - first)).to_string());
            rest = &rest[start + 13..];
        } else {
            out.push_str(&rest[start..start + 2]);
            rest = &rest[start + 2..];
        }
    }
    out.push_str(rest);
    out.into_bytes()
}

async fn status_of(stack: &Stack, mid: &str) -> Option<(String, Option<String>)> {
    sqlx::query_as("SELECT status, status_reason FROM messages WHERE external_message_id = $1")
        .bind(mid)
        .fetch_optional(&stack.db().await)
        .await
        .unwrap()
}

async fn metric(stack: &Stack, line_start: &str) -> f64 {
    let mut total = 0.0;
    for addr in &stack.worker_addrs {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        total += text
            .lines()
            .filter(|l| l.starts_with(line_start))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_answerable_kind_gets_exactly_one_reply() {
    let stack = Stack::start(Options::default()).await;
    let account = stack.account.ig_account_id.clone();
    let cases = [
        ("ig_message_with_attachments_doc.json", None),
        ("ig_story_reply_doc.json", Some("[reply to your story]")),
        (
            "ig_postback_doc.json",
            Some("SELECTED-ICEBREAKER-REPLY-OR-CTA-BUTTON"),
        ),
    ];
    let mut users = Vec::new();
    for (name, _) in &cases {
        let customer = user();
        assert_eq!(
            stack.post(instantiate(name, &account, &customer, &mid())).await,
            200,
            "{name}"
        );
        users.push(customer);
    }
    for ((name, expected), customer) in cases.iter().zip(&users) {
        assert!(
            eventually(LONG, || async { stack.sent_to(customer).len() == 1 }).await,
            "{name} answered"
        );
        let reply = &stack.sent_to(customer)[0];
        if let Some(expected) = expected {
            assert!(reply.contains(expected), "{name}: {reply}");
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for customer in &users {
        assert_eq!(stack.sent_to(customer).len(), 1, "once");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reactions_edits_deletions_reads_referrals_and_dashboard_tests_are_recorded_not_answered() {
    let stack = Stack::start(Options::default()).await;
    let account = stack.account.ig_account_id.clone();
    let customer = user();
    let original = mid();
    stack.dm(&customer, &original, "the original", now_ms()).await;
    assert!(eventually(LONG, || async { stack.sent_to(&customer).len() == 1 }).await);
    let db = stack.db().await;

    // A reaction lands on the message it reacts to.
    assert_eq!(
        stack
            .post(instantiate(
                "ig_message_reactions_doc.json",
                &account,
                &customer,
                &original
            ))
            .await,
        200
    );
    assert!(
        eventually(LONG, || async {
            sqlx::query_scalar::<_, serde_json::Value>(
                "SELECT reactions FROM messages WHERE external_message_id = $1",
            )
            .bind(&original)
            .fetch_one(&db)
            .await
            .unwrap()
            .to_string()
            .contains("love")
        })
        .await,
        "reaction stored"
    );
    // An edit changes its text.
    assert_eq!(
        stack
            .post(instantiate(
                "ig_message_edit_doc.json",
                &account,
                &customer,
                &original
            ))
            .await,
        200
    );
    assert!(
        eventually(LONG, || async {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT text FROM messages WHERE external_message_id = $1",
            )
            .bind(&original)
            .fetch_one(&db)
            .await
            .unwrap()
            .as_deref()
                == Some("edited text")
        })
        .await,
        "edit applied"
    );
    // A deletion marks it deleted (kept, out of the AI's history).
    let deleted = format!(
        r#"{{"object":"instagram","entry":[{{"id":"{account}","time":{now},"messaging":[{{"sender":{{"id":"{customer}"}},"recipient":{{"id":"{account}"}},"timestamp":{now},"message":{{"mid":"{original}","is_deleted":true}}}}]}}]}}"#,
        now = now_ms()
    );
    assert_eq!(stack.post(deleted.into_bytes()).await, 200);
    assert!(
        eventually(LONG, || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT deleted_at IS NOT NULL FROM messages WHERE external_message_id = $1",
            )
            .bind(&original)
            .fetch_one(&db)
            .await
            .unwrap()
        })
        .await,
        "deletion recorded"
    );

    // Read receipts and referrals: ignored, counted by kind.
    let read = std::fs::read_to_string(format!(
        "{}/../fixtures/meta/ig_messaging_seen_real_raw.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace("17841421930215757", &account);
    assert_eq!(stack.post(read.into_bytes()).await, 200);
    assert_eq!(
        stack
            .post(instantiate(
                "ig_referral_igme_doc.json",
                &account,
                &customer,
                &mid()
            ))
            .await,
        200
    );
    assert!(
        eventually(LONG, || async {
            metric(&stack, "worker_ignored_events_total{kind=\"read\"}").await >= 1.0
                && metric(&stack, "worker_ignored_events_total{kind=\"referral\"}").await >= 1.0
        })
        .await,
        "read and referral counted as ignored"
    );

    // Meta's dashboard test events (entry id 0): recorded as unrouted, never an error loop.
    for name in [
        "ig_reaction_dashboard_test_raw.json",
        "ig_messages_dashboard_test_changes_format.json",
    ] {
        let body = std::fs::read(format!("{}/../fixtures/meta/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(stack.post(body).await, 200, "{name}");
    }
    assert!(
        eventually(LONG, || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM unrouted_events WHERE entry_id = '0'")
                .fetch_one(&db)
                .await
                .unwrap()
                == 2
        })
        .await,
        "dashboard tests recorded"
    );
    assert_eq!(stack.sent_to(&customer).len(), 1, "none of these is answered");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_human_echo_pauses_the_ai_and_what_follows_is_recorded_only() {
    let stack = Stack::start(Options::default()).await;
    let account = stack.account.ig_account_id.clone();
    let customer = user();
    let base = mid();
    // One delivery: a human's reply from the Instagram app (an echo we did not send), a deletion, an
    // unsupported message, an inline reply, a quick reply and an ephemeral attachment.
    assert_eq!(
        stack
            .post(instantiate(
                "ig_echo_deleted_unsupported_variants_doc.json",
                &account,
                &customer,
                &base
            ))
            .await,
        200
    );
    for suffix in ["-3", "-4", "-5", "-6"] {
        let id = format!("{base}{suffix}");
        assert!(
            eventually(LONG, || async { status_of(&stack, &id).await.is_some() }).await,
            "{id} stored"
        );
    }
    let paused: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT ai_paused_until FROM conversations WHERE external_user_id = $1")
            .bind(&customer)
            .fetch_one(&stack.db().await)
            .await
            .unwrap();
    assert!(
        paused.is_some_and(|p| p > chrono::Utc::now()),
        "a human took over"
    );
    // Unsupported content would get the fixed "please type it" answer, but a person has the
    // conversation now.
    let unsupported = format!("{base}-3");
    let quiet = Some(("ignored".to_owned(), Some("human_takeover".to_owned())));
    assert!(
        eventually(LONG, || async { status_of(&stack, &unsupported).await == quiet }).await,
        "recorded, not answered: {:?}",
        status_of(&stack, &unsupported).await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        stack.sent_to(&customer).is_empty(),
        "the AI stays quiet while a human handles it"
    );
    stack.stop().await;
}
