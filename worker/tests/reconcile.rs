//! Reconciliation against the Conversations API (sim as Meta; real PostgreSQL and RabbitMQ): DMs no
//! webhook delivered are answered within a reconcile period, once, even if the webhook comes too; a
//! dropped subscription is restored; out-of-window DMs are stored as missed; the API budget holds.

mod support;

use std::time::Duration;
use support::{eventually, mid, now_ms, user, Options, Stack};

const LONG: Duration = Duration::from_secs(30);

fn reconciling(workers: usize) -> Options {
    Options {
        workers,
        worker_env: vec![("RECONCILE_INTERVAL_SECONDS", "1".into())],
        ..Options::default()
    }
}

async fn events(stack: &Stack) -> Vec<(String, serde_json::Value)> {
    sqlx::query_as("SELECT kind, detail FROM account_events ORDER BY created_at")
        .fetch_all(&stack.db().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dm_that_never_came_by_webhook_is_answered_and_the_subscription_restored() {
    let stack = Stack::start(reconciling(1)).await;
    assert!(
        stack.sim.subscriptions(&stack.account.page_id).is_none(),
        "Meta dropped it"
    );
    let customer = user();
    stack.sim.add_inbound_message(
        &stack.account.ig_account_id,
        &customer,
        &mid(),
        "did you get this?",
        now_ms(),
    );
    assert!(
        eventually(LONG, || async { stack.sent_to(&customer).len() == 1 }).await,
        "answered without any webhook"
    );
    assert!(stack.sent_to(&customer)[0].contains("did you get this?"));
    // The subscription is restored by the same check, a moment after the DM was queued.
    assert!(
        eventually(LONG, || async {
            stack
                .sim
                .subscriptions(&stack.account.page_id)
                .is_some_and(|fields| fields.iter().any(|f| f == "messages"))
        })
        .await,
        "subscribed again"
    );
    assert!(
        eventually(LONG, || async {
            events(&stack)
                .await
                .iter()
                .any(|(kind, detail)| kind == "resubscribed" && detail["recovered"] == 1)
        })
        .await,
        "recorded for the operator"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM messages WHERE text = 'did you get this?'")
        .fetch_one(&stack.db().await)
        .await
        .unwrap();
    assert_eq!(status, "answered");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dm_that_came_by_both_paths_is_answered_once() {
    let stack = Stack::start(reconciling(2)).await;
    let customer = user();
    let message_id = mid();
    let at = now_ms();
    stack.sim.add_inbound_message(
        &stack.account.ig_account_id,
        &customer,
        &message_id,
        "both ways",
        at,
    );
    stack.dm(&customer, &message_id, "both ways", at).await;
    assert!(eventually(LONG, || async { stack.sent_to(&customer).len() == 1 }).await);
    // Several reconcile periods later, still one answer.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(stack.sent_to(&customer).len(), 1);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE external_message_id = $1")
        .bind(&message_id)
        .fetch_one(&stack.db().await)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recovered_dm_outside_the_window_is_stored_as_missed_and_not_answered() {
    let stack = Stack::start(Options {
        connected_ago: Duration::from_secs(3 * 24 * 3600),
        ..reconciling(1)
    })
    .await;
    let customer = user();
    let old = now_ms() - 25 * 3600 * 1000;
    stack.sim.add_inbound_message(
        &stack.account.ig_account_id,
        &customer,
        &mid(),
        "from yesterday",
        old,
    );
    let db = stack.db().await;
    assert!(
        eventually(LONG, || async {
            sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT status, status_reason FROM messages WHERE text = 'from yesterday'",
            )
            .fetch_optional(&db)
            .await
            .unwrap()
                == Some(("ignored".into(), Some("missed_outside_window".into())))
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        stack.sent_to(&customer).is_empty(),
        "never answered out of window"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dms_from_before_the_account_was_connected_are_not_recovered() {
    let stack = Stack::start(reconciling(1)).await;
    let customer = user();
    stack.sim.add_inbound_message(
        &stack.account.ig_account_id,
        &customer,
        &mid(),
        "before you connected",
        now_ms() - 3_600_000,
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(stack.sent_to(&customer).is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_stays_within_two_conversations_calls_per_second_per_account() {
    let stack = Stack::start(reconciling(3)).await;
    // Work for the reconciler on every pass: a new webhook-less DM each half second.
    for i in 0..12 {
        stack.sim.add_inbound_message(
            &stack.account.ig_account_id,
            &user(),
            &mid(),
            &format!("quiet {i}"),
            now_ms(),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls: Vec<chrono::DateTime<chrono::Utc>> = stack
        .sim
        .graph_requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/conversations") || r.path.ends_with("/subscribed_apps"))
        .map(|r| r.at)
        .collect();
    assert!(calls.len() >= 4, "the reconciler ran: {} calls", calls.len());
    for (i, start) in calls.iter().enumerate() {
        let in_window = calls[i..]
            .iter()
            .take_while(|t| **t - *start < chrono::Duration::seconds(1))
            .count();
        assert!(in_window <= 2, "{in_window} calls within one second from {start}");
    }
    stack.stop().await;
}
