//! The reply pass's storage steps against the real PostgreSQL: one pass at a time per conversation, a
//! lost lease writes nothing, the lease is only given back when no work is left, and an inbound
//! redelivery changes nothing. These are the statements the pipeline tests exercise end to end; here
//! each race is forced directly.

mod support;

use chrono::Utc;
use omnidm_shared::policy::MessageKind;
use omnidm_shared::states::{Author, Channel, MessageStatus};
use omnidm_worker::store::lease::{self, Lease};
use omnidm_worker::store::{credentials, echoes, inbound, outbound, work};
use std::time::Duration;
use support::{mid, user, Options, Stack};
use uuid::Uuid;

fn lease(conversation_id: Uuid) -> Lease {
    Lease {
        conversation_id,
        owner: Uuid::new_v4(),
        ttl: Duration::from_secs(60),
    }
}

fn inbound<'a>(mid: &'a str, text: &'a str, raw: &'a str) -> inbound::NewMessage<'a> {
    inbound::NewMessage {
        mid,
        author: Author::Customer,
        kind: MessageKind::Text,
        text: Some(text),
        raw,
        meta_timestamp: Utc::now(),
        status: MessageStatus::Pending,
        status_reason: None,
    }
}

async fn status_of(pool: &sqlx::PgPool, mid: &str) -> String {
    sqlx::query_scalar("SELECT status FROM messages WHERE external_message_id = $1")
        .bind(mid)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A stack with no workers (nothing races the test) and its seeded account.
async fn tenant() -> (Stack, sqlx::PgPool, credentials::Credential) {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let pool = stack.db().await;
    let credential = credentials::get(&pool, stack.credential_id)
        .await
        .unwrap()
        .expect("seeded credential");
    (stack, pool, credential)
}

#[tokio::test]
async fn one_pass_at_a_time_a_lost_lease_writes_nothing_and_release_waits_for_idle() {
    let (stack, pool, credential) = tenant().await;
    let customer = user();
    let first = mid();
    let stored = inbound::store(
        &pool,
        &credential,
        Channel::Instagram,
        &customer,
        &inbound(&first, "hi", "{}"),
    )
    .await
    .unwrap();
    assert!(stored.inserted);

    // A redelivery of the same Meta message is a no-op in the same conversation.
    let again = inbound::store(
        &pool,
        &credential,
        Channel::Instagram,
        &customer,
        &inbound(&first, "hi", "{}"),
    )
    .await
    .unwrap();
    assert!(!again.inserted);
    assert_eq!(again.conversation_id, stored.conversation_id);

    let a = lease(stored.conversation_id);
    let b = lease(stored.conversation_id);
    let leased = lease::acquire_lease(&pool, &a, 20).await.unwrap().expect("free");
    assert_eq!(leased.external_user_id, customer);
    assert_eq!(leased.credential.id, stack.credential_id);
    assert!(
        lease::acquire_lease(&pool, &b, 20).await.unwrap().is_none(),
        "a second pass must not take a held conversation"
    );

    let work = work::work(&pool, stored.conversation_id, 20).await.unwrap();
    assert_eq!(work.pending.len(), 1);
    assert!(work.unsent.is_empty());
    assert!(work.history.is_empty(), "what is being answered is not history");
    assert!(
        !a.release_if_idle(&pool).await.unwrap(),
        "a pending message keeps the lease"
    );

    // A pass whose lease is gone stores nothing: the message stays pending for the holder.
    let answers = [work.pending[0].id];
    let chunks = ["one".to_string(), "two".to_string()];
    let lost = outbound::create_reply(&pool, &b, &answers, &chunks, true)
        .await
        .unwrap();
    assert!(lost.is_none());
    assert_eq!(status_of(&pool, &first).await, "pending");
    let outbound: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE direction = 'outbound'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbound, 0);

    // The holder stores its reply with the first chunk already claimed for sending.
    let unsent = outbound::create_reply(&pool, &a, &answers, &chunks, true)
        .await
        .unwrap()
        .expect("the holder stores its reply");
    assert_eq!(
        unsent.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert_eq!(
        unsent.iter().map(|c| c.claimed).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(status_of(&pool, &first).await, "answered");
    let stored_chunks = work::work(&pool, stored.conversation_id, 20)
        .await
        .unwrap()
        .unsent;
    assert_eq!(
        stored_chunks.iter().map(|c| c.id).collect::<Vec<_>>(),
        unsent.iter().map(|c| c.id).collect::<Vec<_>>(),
        "stored in chunk order"
    );
    assert_eq!(
        stored_chunks
            .iter()
            .map(|c| c.status.as_str())
            .collect::<Vec<_>>(),
        ["sending", "queued"],
        "the claim is stored before any send"
    );
    assert!(stored_chunks[0].send_attempted_at.is_some());

    // Unsent chunks keep the lease too: marking the first sent does not give it back…
    assert!(!a.release_if_idle(&pool).await.unwrap());
    let sent = |n: usize| format!("{first}-out-{n}");
    assert!(
        !outbound::mark_sent_and_release_if_idle(&pool, &a, unsent[0].id, &sent(0))
            .await
            .unwrap(),
        "the second chunk is still to send"
    );
    assert_eq!(status_of(&pool, &sent(0)).await, "sent");
    // …marking the last one sent does, in the same statement.
    outbound::mark_sending(&pool, unsent[1].id).await.unwrap();
    assert!(
        !a.release_if_idle(&pool).await.unwrap(),
        "a chunk mid-send keeps the lease"
    );
    assert!(
        outbound::mark_sent_and_release_if_idle(&pool, &a, unsent[1].id, &sent(1))
            .await
            .unwrap()
    );
    assert_eq!(status_of(&pool, &sent(1)).await, "sent");
    let history = work::work(&pool, stored.conversation_id, 20)
        .await
        .unwrap()
        .history;
    assert_eq!(
        history
            .iter()
            .map(|line| (line.author.as_str(), line.text.as_str()))
            .collect::<Vec<_>>(),
        [("customer", "hi"), ("ai", "one"), ("ai", "two")],
        "oldest first, the answer in chunk order"
    );
    assert!(lease::acquire_lease(&pool, &b, 20).await.unwrap().is_some());
    stack.stop().await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let (stack, pool, credential) = tenant().await;
    let message = mid();
    let stored = inbound::store(
        &pool,
        &credential,
        Channel::Instagram,
        &user(),
        &inbound(&message, "hello", "{}"),
    )
    .await
    .unwrap();
    let crashed = Lease {
        ttl: Duration::ZERO,
        ..lease(stored.conversation_id)
    };
    assert!(lease::acquire_lease(&pool, &crashed, 20).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let next = lease(stored.conversation_id);
    assert!(
        lease::acquire_lease(&pool, &next, 20).await.unwrap().is_some(),
        "a crashed holder blocks the conversation only until its lease expires"
    );
    // The crashed holder, should it wake up, can no longer store a reply.
    let work = work::work(&pool, stored.conversation_id, 20).await.unwrap();
    let late = outbound::create_reply(
        &pool,
        &crashed,
        &[work.pending[0].id],
        &["late".to_string()],
        false,
    )
    .await
    .unwrap();
    assert!(late.is_none());
    assert_eq!(status_of(&pool, &message).await, "pending");
    stack.stop().await;
}

#[tokio::test]
async fn last_inbound_is_metas_time_of_the_newest_message_whatever_arrives_late() {
    let (stack, pool, credential) = tenant().await;
    let customer = user();
    // PostgreSQL keeps microseconds.
    let now = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let at = |hours_ago: i64| now - chrono::Duration::hours(hours_ago);
    let store = |mid: String, hours_ago: i64| {
        let (pool, credential, customer) = (&pool, &credential, &customer);
        async move {
            let message = inbound::NewMessage {
                meta_timestamp: at(hours_ago),
                ..inbound(&mid, "hi", "{}")
            };
            inbound::store(pool, credential, Channel::Instagram, customer, &message)
                .await
                .unwrap()
        }
    };
    let last_inbound = || async {
        sqlx::query_scalar::<_, chrono::DateTime<Utc>>(
            "SELECT last_inbound_at FROM conversations WHERE external_user_id = $1",
        )
        .bind(&customer)
        .fetch_one(&pool)
        .await
        .unwrap()
    };

    let first = mid();
    store(first.clone(), 2).await;
    assert_eq!(last_inbound().await, at(2));
    // Meta redelivers it, and the reconciler recovers an older one: neither is recent activity.
    store(first, 2).await;
    store(mid(), 5).await;
    assert_eq!(last_inbound().await, at(2));
    store(mid(), 0).await;
    assert_eq!(last_inbound().await, at(0));
    // A timestamp from a clock running ahead is not kept as a time yet to come.
    store(mid(), -3).await;
    assert!(last_inbound().await <= Utc::now());
    stack.stop().await;
}

#[tokio::test]
async fn an_echo_racing_the_send_apis_answer_is_still_recognised_as_ours() {
    let (stack, pool, credential) = tenant().await;
    let customer = user();
    let message = mid();
    let stored = inbound::store(
        &pool,
        &credential,
        Channel::Instagram,
        &customer,
        &inbound(&message, "hi", "{}"),
    )
    .await
    .unwrap();
    let holder = lease(stored.conversation_id);
    lease::acquire_lease(&pool, &holder, 20).await.unwrap();
    let work = work::work(&pool, stored.conversation_id, 20).await.unwrap();
    let chunks = ["hello!".to_string()];
    let unsent = outbound::create_reply(&pool, &holder, &[work.pending[0].id], &chunks, true)
        .await
        .unwrap()
        .unwrap();
    let echo_mid = format!("{message}-echo");

    // Meta answered; we are recording it (not yet committed) when the echo is handled.
    let mut recording = pool.begin().await.unwrap();
    sqlx::query("UPDATE messages SET external_message_id = $2, status = 'sent' WHERE id = $1")
        .bind(unsent[0].id)
        .bind(&echo_mid)
        .execute(&mut *recording)
        .await
        .unwrap();
    let echo = tokio::spawn({
        let (pool, account, customer, echo_mid) = (
            pool.clone(),
            credential.account_id.clone(),
            customer.clone(),
            echo_mid.clone(),
        );
        async move {
            echoes::mark_echo_delivered(
                &pool,
                "instagram",
                &account,
                Some(&customer),
                &echo_mid,
                Some("hello!"),
            )
            .await
            .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!echo.is_finished(), "the echo waits for the row being recorded");
    recording.commit().await.unwrap();
    assert!(echo.await.unwrap(), "ours, not a human's reply");
    assert_eq!(status_of(&pool, &echo_mid).await, "delivered");

    // A redelivery of the same echo is recognised by its id; a stranger's message is not ours.
    assert!(echoes::mark_echo_delivered(
        &pool,
        "instagram",
        &credential.account_id,
        Some(&customer),
        &echo_mid,
        None
    )
    .await
    .unwrap());
    assert!(!echoes::mark_echo_delivered(
        &pool,
        "instagram",
        &credential.account_id,
        Some(&customer),
        &mid(),
        Some("typed by a human")
    )
    .await
    .unwrap());
    stack.stop().await;
}

/// The batched forms of the hot statements, as one worker's concurrent jobs hand them over: rows of
/// one batch that touch the same conversation or the same Meta id behave as they would one at a time.
#[tokio::test]
async fn batched_writes_keep_each_rows_own_outcome() {
    let (stack, pool, credential) = tenant().await;
    let (alice, bob) = (user(), user());
    let (first, second, elsewhere) = (mid(), mid(), mid());
    let at = |hours_ago: i64| Utc::now() - chrono::Duration::hours(hours_ago);
    let row = |customer: &str, message: &str, hours_ago: i64| {
        let new = inbound::NewMessage {
            meta_timestamp: at(hours_ago),
            ..inbound(message, "hi", "{}")
        };
        inbound::ToStore::new(&credential, Channel::Instagram, customer, &new)
    };
    // Two of Alice's messages (one of them delivered twice) and one of Bob's, in one statement.
    let stored = inbound::store_many(
        &pool,
        vec![
            row(&alice, &first, 3),
            row(&bob, &elsewhere, 1),
            row(&alice, &second, 2),
            row(&alice, &first, 3),
        ],
    )
    .await
    .unwrap();
    let inserted: Vec<bool> = stored.iter().map(|s| s.inserted).collect();
    assert_eq!(inserted, [true, true, true, false], "a Meta id is stored once");
    assert_eq!(stored[0].conversation_id, stored[2].conversation_id);
    assert_eq!(stored[0].conversation_id, stored[3].conversation_id);
    assert_ne!(stored[0].conversation_id, stored[1].conversation_id);
    let last_inbound: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT last_inbound_at FROM conversations WHERE id = $1")
            .bind(stored[0].conversation_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        (last_inbound - at(2)).num_seconds().abs() <= 1,
        "the newest of the batch's messages"
    );

    // Two answers in one statement, one of them under a lease another pass has since taken.
    let (alices, bobs) = (lease(stored[0].conversation_id), lease(stored[1].conversation_id));
    lease::acquire_lease(&pool, &alices, 20).await.unwrap().unwrap();
    let pending = |conversation_id| {
        let pool = pool.clone();
        async move {
            let work = work::work(&pool, conversation_id, 20).await.unwrap();
            work.pending.iter().map(|p| p.id).collect::<Vec<Uuid>>()
        }
    };
    let answer = |lease: &Lease, answers: Vec<Uuid>, chunks: &[&str]| outbound::NewReply {
        lease: *lease,
        answers,
        chunks: chunks.iter().map(|c| c.to_string()).collect(),
        claim_first: true,
    };
    let thief = lease(stored[1].conversation_id);
    lease::acquire_lease(&pool, &thief, 20).await.unwrap().unwrap();
    let created = outbound::create_replies(
        &pool,
        vec![
            answer(&alices, pending(alices.conversation_id).await, &["one", "two"]),
            answer(&bobs, pending(bobs.conversation_id).await, &["lost"]),
        ],
    )
    .await
    .unwrap();
    let unsent = created[0].as_ref().expect("Alice's pass holds its lease");
    let texts: Vec<&str> = unsent.iter().map(|u| u.text.as_str()).collect();
    assert_eq!(texts, ["one", "two"]);
    assert!(unsent[0].claimed && !unsent[1].claimed);
    assert!(created[1].is_none(), "a lost lease writes nothing");
    assert_eq!(pending(alices.conversation_id).await, Vec::<Uuid>::new());
    assert_eq!(
        pending(bobs.conversation_id).await.len(),
        1,
        "Bob's message still waits"
    );

    // Two echoes of the same text in one batch never both claim the same chunk: the first takes the
    // oldest, and the second finds it taken (as a job, it waits for its own chunk's answer).
    sqlx::query("UPDATE messages SET status = 'sending', text = 'same' WHERE id = ANY($1)")
        .bind(unsent.iter().map(|u| u.id).collect::<Vec<Uuid>>())
        .execute(&pool)
        .await
        .unwrap();
    let echo = |mid: String| echoes::Echo {
        channel: "instagram".into(),
        account_id: credential.account_id.clone(),
        user: Some(alice.clone()),
        mid,
        text: Some("same".into()),
    };
    let ours = echoes::mark_echoes_delivered(&pool, vec![echo(mid()), echo(mid())])
        .await
        .unwrap();
    let delivered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE id = ANY($1) AND status = 'delivered'")
            .bind(unsent.iter().map(|u| u.id).collect::<Vec<Uuid>>())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(ours.iter().filter(|o| **o).count() as i64, delivered);
    assert!(ours[0], "the first echo claims the oldest chunk");

    // Ending two replies in one statement: each lease is given back only where no work is left.
    let sent = |lease: &Lease, id: Uuid| outbound::ReplySent {
        lease: *lease,
        id,
        mid: mid(),
    };
    let released = outbound::mark_sent_and_release_many(
        &pool,
        vec![sent(&thief, Uuid::new_v4()), sent(&alices, unsent[1].id)],
    )
    .await
    .unwrap();
    assert_eq!(
        released,
        [false, true],
        "Bob's message is still pending; Alice's pass is done"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_lease_taken_as_a_late_holder_lets_go_never_reads_its_work_as_undone() {
    let (_stack, pool, credential) = tenant().await;
    let first = mid();
    let stored = inbound::store(
        &pool,
        &credential,
        Channel::Instagram,
        &user(),
        &inbound(&first, "hi", "{}"),
    )
    .await
    .unwrap();
    let holder = lease(stored.conversation_id);
    let held = lease::acquire_lease(&pool, &holder, 20)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(held.work.pending.len(), 1, "the work is read with the lease");

    // A slow holder whose lease has just expired answers and gives the lease back, in a transaction
    // that commits only after the next pass's statement has read its snapshot (where the lease is
    // free to take, being expired) and is waiting for the conversation's row.
    sqlx::query("UPDATE conversations SET lease_expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(stored.conversation_id)
        .execute(&pool)
        .await
        .unwrap();
    let mut holder_tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE messages SET status = 'answered' WHERE external_message_id = $1")
        .bind(&first)
        .execute(&mut *holder_tx)
        .await
        .unwrap();
    sqlx::query("UPDATE conversations SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1")
        .bind(stored.conversation_id)
        .execute(&mut *holder_tx)
        .await
        .unwrap();
    let next = lease(stored.conversation_id);
    let taking = tokio::spawn({
        let pool = pool.clone();
        async move { lease::take_many(&pool, vec![next], 20).await.unwrap() }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the next pass never waited for the row"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder_tx.commit().await.unwrap();
    let taken = taking.await.unwrap();
    assert!(
        matches!(taken.as_slice(), [lease::Take::Raced]),
        "its snapshot predates the holder's answer: it must not take the lease with that work, but look \
         again, got {taken:?}"
    );

    // Taken again, with a snapshot that holds the answer: nothing is left to do.
    let again = lease::acquire_lease(&pool, &next, 20)
        .await
        .unwrap()
        .expect("free now");
    assert!(again.work.pending.is_empty());
    assert_eq!(status_of(&pool, &first).await, "answered");

    // Two passes asking for one conversation in one batch: one takes it; the other is told to look
    // again (and then finds it busy), never both.
    let (a, b) = (lease(stored.conversation_id), lease(stored.conversation_id));
    sqlx::query("UPDATE conversations SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1")
        .bind(stored.conversation_id)
        .execute(&pool)
        .await
        .unwrap();
    let both = lease::take_many(&pool, vec![a, b], 20).await.unwrap();
    let held = both.iter().filter(|t| matches!(t, lease::Take::Held(_))).count();
    let raced = both.iter().filter(|t| matches!(t, lease::Take::Raced)).count();
    assert_eq!((held, raced), (1, 1), "got {both:?}");
    let loser = if matches!(both[0], lease::Take::Held(_)) {
        b
    } else {
        a
    };
    assert!(lease::acquire_lease(&pool, &loser, 20).await.unwrap().is_none());
}
