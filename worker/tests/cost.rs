//! What one DM can cost, whatever a stranger writes: every AI request carries `max_tokens`, a long answer
//! goes out as at most `MAX_REPLY_CHUNKS` messages cut at a sentence end, and a burst puts at most
//! `AI_MAX_BURST_MESSAGES` of its newest messages into one call (the rest are answered by it too); a
//! request the AI rejects is dead-lettered at once, and one too long for its context is asked again
//! without history.

mod support;

use omnidm_sim::{Fault, FaultTarget};
use std::time::Duration;
use support::{eventually, mid, now_ms, user, Options, Stack};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_twenty_thousand_character_answer_goes_out_as_three_messages_cut_at_a_sentence() {
    let stack = Stack::start(Options::default()).await;
    let sentence = "Our blue sneakers come in every size from 36 to 47, and shipping is free. ";
    stack
        .sim
        .set_ai_reply(Some(sentence.repeat(20_000 / sentence.len())));
    let customer = user();
    stack.dm(&customer, &mid(), "tell me everything", now_ms()).await;
    assert!(eventually(WAIT, || async { stack.sent_to(&customer).len() >= 3 }).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = stack.sent_to(&customer);
    assert_eq!(sent.len(), 3, "MAX_REPLY_CHUNKS (3 by default)");
    assert!(sent.iter().all(|m| m.len() <= 1000));
    assert!(
        sent[2].ends_with("free."),
        "cut at a sentence end: {:?}",
        &sent[2][sent[2].len() - 30..]
    );
    let requests = stack.sim.ai_requests();
    assert_eq!(
        requests[0].max_tokens,
        Some(600),
        "AI_MAX_TOKENS (600 by default) on every request"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_burst_puts_only_its_newest_messages_into_the_ai_call_and_is_answered_once() {
    let stack = Stack::start(Options {
        debounce_ms: 1_500,
        worker_env: vec![("AI_MAX_BURST_MESSAGES", "3".into())],
        ..Options::default()
    })
    .await;
    let customer = user();
    let start = now_ms();
    for i in 0..6 {
        stack.dm(&customer, &mid(), &format!("line {i}"), start + i).await;
    }
    let sent = stack.sim.wait_for_sent(1, WAIT).await.expect("answered");
    assert_eq!(
        sent[0].text, "Re: line 3 | line 4 | line 5",
        "the newest three only"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.sent_to(&customer).len(),
        1,
        "one answer for the whole burst"
    );
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE c.external_user_id = $1 AND m.status = 'pending'",
    )
    .bind(&customer)
    .fetch_one(&stack.db().await)
    .await
    .unwrap();
    assert_eq!(pending, 0, "the older messages are answered by the same reply");
    stack.stop().await;
}

#[tokio::test]
async fn a_rejected_ai_request_is_dead_lettered_at_once_not_retried() {
    let stack = Stack::start(Options::default()).await;
    let invalid_key = Fault::OpenaiError {
        http_status: 401,
        code: "invalid_api_key".into(),
    };
    stack.sim.set_fault(FaultTarget::Ai, Some(invalid_key));
    stack.dm(&user(), &mid(), "hello?", now_ms()).await;
    assert!(eventually(WAIT, || async { stack.dead_letters().await == 1 }).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.sim.ai_requests().len(),
        1,
        "one attempt: retrying cannot fix a bad key"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_conversation_too_long_for_the_model_is_asked_again_without_its_history() {
    let stack = Stack::start(Options::default()).await;
    let customer = user();
    stack.dm(&customer, &mid(), "first question", now_ms()).await;
    stack.sim.wait_for_sent(1, WAIT).await.expect("answered");
    let too_long = Fault::OpenaiError {
        http_status: 400,
        code: "context_length_exceeded".into(),
    };
    stack.sim.push_faults(FaultTarget::Ai, too_long, 1);
    stack.dm(&customer, &mid(), "second question", now_ms()).await;
    let sent = stack
        .sim
        .wait_for_sent(2, WAIT)
        .await
        .expect("answered all the same");
    assert_eq!(sent[1].text, "Re: second question");
    let requests = stack.sim.ai_requests();
    let roles = |i: usize| {
        requests[i]
            .messages
            .iter()
            .map(|m| m.role.as_str())
            .collect::<Vec<_>>()
    };
    assert!(
        roles(1).contains(&"assistant"),
        "the refused request carried the history"
    );
    assert_eq!(roles(2), ["system", "user"], "asked again with no history");

    // Too long even alone: failed with its reason, not retried for ever.
    let too_long = Fault::OpenaiError {
        http_status: 400,
        code: "context_length_exceeded".into(),
    };
    stack.sim.push_faults(FaultTarget::Ai, too_long, 2);
    let huge = mid();
    stack.dm(&customer, &huge, "a very long question", now_ms()).await;
    let status = || async {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT status, status_reason FROM messages WHERE external_message_id = $1",
        )
        .bind(&huge)
        .fetch_optional(&stack.db().await)
        .await
        .unwrap()
    };
    let failed = Some(("failed".to_owned(), Some("ai_context_too_long".to_owned())));
    assert!(eventually(WAIT, || async { status().await == failed }).await);
    assert_eq!(stack.sim.ai_requests().len(), 5, "two attempts for it, no more");
    stack.stop().await;
}

#[tokio::test]
async fn past_the_replies_per_minute_what_the_customer_writes_waits_and_is_merged() {
    let stack = Stack::start(Options {
        worker_env: vec![("AI_REPLIES_PER_MINUTE", "1".into())],
        ..Options::default()
    })
    .await;
    let customer = user();
    stack.dm(&customer, &mid(), "first", now_ms()).await;
    stack.sim.wait_for_sent(1, WAIT).await.expect("answered");
    // That reply was 56 s ago, as far as the minute goes: the next one may go in about 4 s.
    sqlx::query("UPDATE messages SET created_at = now() - interval '56 seconds' WHERE author = 'ai'")
        .execute(&stack.db().await)
        .await
        .unwrap();
    stack.dm(&customer, &mid(), "second", now_ms()).await;
    stack.dm(&customer, &mid(), "third", now_ms() + 1).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(stack.sent_to(&customer).len(), 1, "held back within the minute");
    let sent = stack
        .sim
        .wait_for_sent(2, WAIT)
        .await
        .expect("answered after the minute");
    assert_eq!(sent[1].text, "Re: second | third", "merged into one reply");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.sent_to(&customer).len(), 2);
    stack.stop().await;
}
