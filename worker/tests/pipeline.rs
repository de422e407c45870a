//! End to end: signed webhook → ingest → RabbitMQ → worker(s) → sim (Meta and the AI), against the real
//! RabbitMQ and PostgreSQL.

mod support;

use omnidm_sim::{Fault, FaultTarget};
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_text_dm_gets_exactly_one_reply_and_both_messages_are_stored() {
    let stack = Stack::start(Options::default()).await;
    let user = user();

    stack.dm(&user, &mid(), "Do you ship to Lisbon?", now_ms()).await;

    assert!(eventually(WAIT, || async { stack.sent_to(&user).len() == 1 }).await);
    assert_eq!(stack.sent_to(&user), ["Re: Do you ship to Lisbon?"]);
    let ai = stack.sim.ai_requests();
    assert_eq!(
        ai[0].messages[0].role, "system",
        "the customer's system prompt leads"
    );
    let db = stack.db().await;
    let rows = || async {
        sqlx::query_as::<_, (String, String)>("SELECT author, status FROM messages ORDER BY created_at")
            .fetch_all(&db)
            .await
            .unwrap()
    };
    let expected = [
        ("customer".to_owned(), "answered".to_owned()),
        ("ai".to_owned(), "delivered".to_owned()),
    ];
    assert!(
        eventually(WAIT, || async { rows().await == expected }).await,
        "inbound answered, outbound delivered (its echo was recognised): {:?}",
        rows().await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.sent_to(&user).len(), 1, "our own echo is never answered");
    stack.stop().await;
}

#[tokio::test]
async fn the_same_webhook_delivered_three_times_is_answered_once() {
    let stack = Stack::start(Options::default()).await;
    let user = user();
    let body = omnidm_sim::webhook::payload::text_message(
        &stack.account.ig_account_id,
        &user,
        &mid(),
        "hello",
        now_ms(),
    );

    for _ in 0..3 {
        assert_eq!(stack.post(body.clone()).await, 200);
    }

    assert!(eventually(WAIT, || async { !stack.sent_to(&user).is_empty() }).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stack.sent_to(&user).len(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn a_burst_posted_out_of_order_to_two_workers_is_answered_once_in_timestamp_order() {
    let stack = Stack::start(Options {
        workers: 2,
        debounce_ms: 1_500,
        ..Options::default()
    })
    .await;
    let user = user();
    let base = now_ms();
    let texts = ["hi", "I want to order", "the blue one", "size M", "thanks"];
    let order = [2, 0, 4, 1, 3];

    for i in order {
        stack.dm(&user, &mid(), texts[i], base + i as i64 * 100).await;
    }

    assert!(eventually(WAIT, || async { !stack.sent_to(&user).is_empty() }).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stack.sent_to(&user),
        ["Re: hi | I want to order | the blue one | size M | thanks"]
    );
    assert_eq!(
        stack.sim.ai_requests().len(),
        1,
        "one AI call saw the whole burst"
    );
    stack.stop().await;
}

#[tokio::test]
async fn two_hundred_conversations_across_two_workers_are_each_answered_exactly_once() {
    let stack = Stack::start(Options {
        workers: 2,
        debounce_ms: 0,
        ..Options::default()
    })
    .await;
    let users: Vec<String> = (0..200).map(|i| format!("{}", 50_000_000 + i)).collect();

    let mids: Vec<String> = users.iter().map(|_| mid()).collect();
    let posts = users
        .iter()
        .zip(&mids)
        .map(|(u, m)| stack.dm(u, m, "price?", now_ms()));
    futures_util::future::join_all(posts).await;

    assert!(
        eventually(Duration::from_secs(60), || async {
            stack.sim.sent_messages().len() >= 200
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = stack.sim.sent_messages();
    assert_eq!(sent.len(), 200);
    let mut recipients: Vec<_> = sent.iter().map(|m| m.recipient_id.clone()).collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 200);
    stack.stop().await;
}

#[tokio::test]
async fn a_human_answering_from_the_app_pauses_the_ai_for_that_conversation() {
    let stack = Stack::start(Options::default()).await;
    let user = user();
    let echo = omnidm_sim::webhook::payload::echo(
        &stack.account.ig_account_id,
        &user,
        &mid(),
        "Hi, Ana here!",
        now_ms(),
    );

    assert_eq!(stack.post(echo).await, 200);
    let db = stack.db().await;
    assert!(
        eventually(WAIT, || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT coalesce(ai_paused_until > now(), false) FROM conversations WHERE external_user_id = $1",
            )
            .bind(&user)
            .fetch_optional(&db)
            .await
            .unwrap()
            .unwrap_or(false)
        })
        .await
    );
    stack.dm(&user, &mid(), "thanks Ana", now_ms()).await;

    assert!(
        eventually(WAIT, || async {
            // NULL until the reply pass has looked at the DM.
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT status_reason FROM messages WHERE text = 'thanks Ana'",
            )
            .fetch_optional(&db)
            .await
            .unwrap()
            .flatten()
            .is_some_and(|r| r == "human_takeover")
        })
        .await
    );
    assert!(
        stack.sent_to(&user).is_empty(),
        "the AI stays quiet while a human handles the conversation"
    );
    let human: String = sqlx::query_scalar("SELECT author FROM messages WHERE text = 'Hi, Ana here!'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(human, "human", "the human's message is in the history");
    stack.stop().await;
}

#[tokio::test]
async fn the_ai_failing_twice_then_succeeding_gives_one_reply() {
    let stack = Stack::start(Options::default()).await;
    stack.sim.push_faults(FaultTarget::Ai, Fault::HttpStatus(500), 2);
    let user = user();

    stack.dm(&user, &mid(), "anyone there?", now_ms()).await;

    assert!(eventually(WAIT, || async { stack.sent_to(&user).len() == 1 }).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.sent_to(&user), ["Re: anyone there?"]);
    stack.stop().await;
}

#[tokio::test]
async fn an_ai_outage_longer_than_the_budget_dead_letters_and_replay_answers_it() {
    let stack = Stack::start(Options {
        max_failures: 2,
        ..Options::default()
    })
    .await;
    stack.sim.set_fault(FaultTarget::Ai, Some(Fault::HttpStatus(503)));
    let user = user();
    stack.dm(&user, &mid(), "hello?", now_ms()).await;

    assert!(
        eventually(Duration::from_secs(40), || async {
            stack.dead_letters().await == 1
        })
        .await,
        "dead-lettered after the budget"
    );
    assert!(stack.sent_to(&user).is_empty());

    stack.sim.set_fault(FaultTarget::Ai, None);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("replay-dead-letters")
        .envs(stack.worker_env())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("replayed 1"));

    assert!(eventually(WAIT, || async { stack.sent_to(&user).len() == 1 }).await);
    stack.stop().await;
}

#[tokio::test]
async fn meta_throttling_pauses_the_account_and_the_reply_goes_out_after_the_wait() {
    let stack = Stack::start(Options::default()).await;
    stack.sim.push_faults(
        FaultTarget::Send,
        Fault::graph_error(613, Some(2534040), "rate limit"),
        1,
    );
    let user = user();

    stack.dm(&user, &mid(), "are you open?", now_ms()).await;

    let db = stack.db().await;
    assert!(
        eventually(WAIT, || async {
            sqlx::query_scalar::<_, bool>("SELECT send_paused_until IS NOT NULL FROM instagram_credentials")
                .fetch_one(&db)
                .await
                .unwrap()
        })
        .await
    );
    let paused_at = chrono::Utc::now();
    assert!(eventually(WAIT, || async { stack.sent_to(&user).len() == 1 }).await);
    let sends: Vec<_> = stack
        .sim
        .graph_requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/me/messages"))
        .map(|r| r.at)
        .collect();
    assert_eq!(
        sends.len(),
        2,
        "the throttled attempt and the successful one, nothing in between"
    );
    assert!(
        sends[1] - paused_at >= chrono::Duration::seconds(1),
        "no send before the advised time"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_dead_token_marks_the_account_and_parks_the_reply() {
    let stack = Stack::start(Options::default()).await;
    stack
        .sim
        .push_faults(FaultTarget::Send, Fault::token_expired(), 1);
    let user = user();

    stack.dm(&user, &mid(), "hello", now_ms()).await;

    let db = stack.db().await;
    assert!(
        eventually(WAIT, || async {
            let status: String = sqlx::query_scalar("SELECT status FROM instagram_credentials")
                .fetch_one(&db)
                .await
                .unwrap();
            let parked: Option<String> =
                sqlx::query_scalar("SELECT status FROM messages WHERE author = 'ai'")
                    .fetch_optional(&db)
                    .await
                    .unwrap();
            status == "reauth_required" && parked.as_deref() == Some("parked")
        })
        .await
    );
    stack.dm(&user, &mid(), "still there?", now_ms()).await;
    assert!(
        eventually(WAIT, || async {
            sqlx::query_scalar::<_, String>("SELECT status FROM messages WHERE text = 'still there?'")
                .fetch_optional(&db)
                .await
                .unwrap()
                .is_some_and(|s| s == "pending")
        })
        .await,
        "new messages are stored and wait for the reconnect"
    );
    assert!(stack.sent_to(&user).is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn outside_the_window_is_recorded_as_failed_and_not_retried() {
    let stack = Stack::start(Options::default()).await;
    stack
        .sim
        .push_faults(FaultTarget::Send, Fault::outside_window(), 1);
    let user = user();

    stack.dm(&user, &mid(), "late", now_ms()).await;

    let db = stack.db().await;
    assert!(
        eventually(WAIT, || async {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT status_reason FROM messages WHERE author = 'ai' AND status = 'failed'",
            )
            .fetch_optional(&db)
            .await
            .unwrap()
            .flatten()
            .is_some_and(|r| r == "outside_window")
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sends = stack
        .sim
        .graph_requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/me/messages"))
        .count();
    assert_eq!(sends, 1, "never retried");
    stack.stop().await;
}

#[tokio::test]
async fn a_long_answer_is_split_into_chunks_of_at_most_1000_bytes_in_order() {
    let stack = Stack::start(Options::default()).await;
    // About 2,400 bytes: three messages, within MAX_REPLY_CHUNKS (worker/tests/cost.rs covers longer).
    let long: String = (0..500).map(|i| format!("w{i} ")).collect();
    stack.sim.set_ai_reply(Some(long.clone()));
    let user = user();

    stack.dm(&user, &mid(), "tell me everything", now_ms()).await;

    assert!(eventually(WAIT, || async { stack.sent_to(&user).len() >= 3 }).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = stack.sent_to(&user);
    assert!(sent.iter().all(|c| c.len() <= 1000));
    assert_eq!(sent.join(" "), long.trim());
    stack.stop().await;
}

#[tokio::test]
async fn a_worker_killed_mid_job_is_redelivered_and_answered_exactly_once() {
    let mut stack = Stack::start(Options {
        workers: 0,
        debounce_ms: 0,
        ..Options::default()
    })
    .await;
    stack.sim.set_ai_latency(Duration::from_secs(3));
    let mut doomed = stack.spawn_worker_process();
    let user = user();
    stack.dm(&user, &mid(), "order #42?", now_ms()).await;
    assert!(
        eventually(WAIT, || async { !stack.sim.ai_requests().is_empty() }).await,
        "the job is mid-AI-call"
    );

    doomed.start_kill().unwrap();
    let _ = doomed.wait().await;
    stack.sim.set_ai_latency(Duration::ZERO);
    stack.start_worker().await;

    assert!(
        eventually(Duration::from_secs(60), || async {
            stack.sent_to(&user).len() == 1
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stack.sent_to(&user).len(), 1);
    stack.stop().await;
}
