//! Ingest against the real RabbitMQ: what Meta sends, what lands in which queue, and what Meta is told.

mod support;

use omnidm_shared::job::{EventSource, Job};
use std::time::Duration;
use support::*;

#[tokio::test]
async fn handshake_answers_the_challenge_only_for_the_right_token() {
    let ingest = TestIngest::spawn().await;
    let get = |query: &'static str| {
        let url = format!("{}/api/webhooks/instagram?{query}", ingest.url);
        let client = ingest.client.clone();
        async move { client.get(url).send().await.unwrap() }
    };

    let ok = get("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock").await;
    assert_eq!(ok.status(), 200);
    assert!(ok.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(ok.text().await.unwrap(), "1158201444");

    let wrong = get("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess").await;
    assert_eq!(wrong.status(), 403);
    assert_eq!(wrong.text().await.unwrap(), "");

    for query in [
        "",
        "hub.mode=subscribe&hub.challenge=1",
        "hub.challenge=1&hub.verify_token=meatyhamhock",
    ] {
        assert_eq!(get(query).await.status(), 403, "{query}");
    }
    let script = get("hub.mode=subscribe&hub.challenge=%3Cscript%3E&hub.verify_token=meatyhamhock").await;
    assert_eq!(script.status(), 400);
    assert!(!script.text().await.unwrap().contains("script"));
    ingest.stop().await;
}

#[tokio::test]
async fn a_real_signed_message_is_queued_with_its_exact_bytes() {
    let ingest = TestIngest::spawn().await;
    let body = fixture("ig_text_message_real_raw.json");

    let response = ingest.post_signed(&body, SECRET).await;

    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let jobs = drain(&ingest.topology().jobs_queue()).await;
    assert_eq!(jobs.len(), 1);
    let Ok(Job::V1(job)) = Job::from_slice(&jobs[0].body) else {
        panic!("a v1 job");
    };
    assert_eq!(job.object, "instagram");
    assert_eq!(job.entry_id, "17841400538867190");
    assert_eq!(job.source, EventSource::Messaging);
    assert_eq!(
        jobs[0].message_id.as_deref(),
        Some(job.job_id.to_string().as_str())
    );
    let text = std::str::from_utf8(&body).unwrap();
    let start = text.find(r#""messaging":["#).unwrap() + r#""messaging":["#.len();
    let end = text.rfind("]}]}").unwrap();
    assert_eq!(
        job.event.get(),
        &text[start..end],
        "the event's bytes exactly as Meta sent them"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn metas_known_answer_vector_is_accepted_and_reserialised_json_is_not() {
    let ingest = TestIngest::spawn().await;
    let raw = fixture("ig_reaction_dashboard_test_raw.json");
    let body = raw.strip_suffix(b"\n").unwrap_or(&raw);
    let header = "sha256=9d775973af37fd3b6f8e5b1333680cae1890080e9db42b5fcbf01845cbf8ecdd";

    assert_eq!(ingest.post(body, Some(header)).await.status(), 200);
    let reserialised =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(body).unwrap()).unwrap();
    assert_eq!(ingest.post(&reserialised, Some(header)).await.status(), 403);

    let jobs = drain(&ingest.topology().jobs_queue()).await;
    assert_eq!(jobs.len(), 1);
    let Ok(Job::V1(job)) = Job::from_slice(&jobs[0].body) else {
        panic!("a v1 job");
    };
    assert!(
        job.event.get().contains(r#""emoji":"\u2764\ufe0f""#),
        "escapes kept byte for byte"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn a_batch_becomes_exactly_one_job_per_event() {
    let ingest = TestIngest::spawn().await;
    let body = br#"{"object":"instagram","entry":[
        {"time":1,"id":"A","messaging":[{"sender":{"id":"u1"},"recipient":{"id":"A"},"timestamp":1,"message":{"mid":"m1","text":"a"}},
                                        {"sender":{"id":"u2"},"recipient":{"id":"A"},"timestamp":2,"message":{"mid":"m2","text":"b"}}]},
        {"time":1,"id":"B","messaging":[{"sender":{"id":"u3"},"recipient":{"id":"B"},"timestamp":3,"message":{"mid":"m3","text":"c"}}],
                           "standby":[{"sender":{"id":"u4"},"recipient":{"id":"B"},"timestamp":4,"message":{"mid":"m4","text":"d"}}]},
        {"time":1,"id":"0","changes":[{"field":"messages","value":{"sender":{"id":"12334"},"recipient":{"id":"23245"},"timestamp":"1527459824","message":{"mid":"random_mid","text":"random_text"}}}]},
        {"time":1,"id":"C","messaging":[{"timestamp":5,"brand_new_event_kind":{"x":1}}]}]}"#;

    assert_eq!(ingest.post_signed(body, SECRET).await.status(), 200);

    let jobs = drain(&ingest.topology().jobs_queue()).await;
    let mut seen: Vec<(String, EventSource)> = jobs
        .iter()
        .map(|j| {
            let Ok(Job::V1(job)) = Job::from_slice(&j.body) else {
                panic!("a v1 job");
            };
            (job.entry_id.into_owned(), job.source)
        })
        .collect();
    seen.sort_by_key(|(entry, source)| (entry.clone(), source.as_str()));
    assert_eq!(
        seen,
        [
            ("0".into(), EventSource::Changes),
            ("A".into(), EventSource::Messaging),
            ("A".into(), EventSource::Messaging),
            ("B".into(), EventSource::Messaging),
            ("B".into(), EventSource::Standby),
            ("C".into(), EventSource::Messaging),
        ]
    );
    ingest.stop().await;
}

#[tokio::test]
async fn bad_or_missing_signatures_are_refused_and_nothing_is_queued() {
    let ingest = TestIngest::spawn().await;
    let body = fixture("ig_text_message_real_raw.json");

    assert_eq!(ingest.post(&body, None).await.status(), 403);
    assert_eq!(ingest.post_signed(&body, "not_our_secret").await.status(), 403);
    assert_eq!(ingest.post(&body, Some("sha256=deadbeef")).await.status(), 403);
    assert_eq!(
        ingest
            .post(&body, Some("sha1=07176f4a00970d9b011eb741c95882b7d4dcc97b"))
            .await
            .status(),
        403
    );
    let mut tampered = body.clone();
    tampered[60] ^= 1;
    let signature = omnidm_shared::signature::sign(SECRET.as_bytes(), &body);
    assert_eq!(ingest.post(&tampered, Some(&signature)).await.status(), 403);

    assert!(drain(&ingest.topology().jobs_queue()).await.is_empty());
    assert!(drain(&ingest.topology().rejected_queue()).await.is_empty());
    assert!(ingest
        .metrics()
        .await
        .contains(r#"ingest_webhook_requests_total{outcome="bad_signature"} 5"#));
    ingest.stop().await;
}

#[tokio::test]
async fn a_body_signed_with_the_rotated_secret_is_accepted() {
    let ingest = TestIngest::spawn().await;
    let body = fixture("ig_text_message_real_raw.json");
    assert_eq!(ingest.post_signed(&body, ROTATED_SECRET).await.status(), 200);
    assert_eq!(drain(&ingest.topology().jobs_queue()).await.len(), 1);
    ingest.stop().await;
}

#[tokio::test]
async fn an_oversize_body_is_413_and_nothing_is_queued() {
    let ingest = TestIngest::spawn().await;
    let mut body = br#"{"object":"instagram","entry":[],"pad":""#.to_vec();
    body.resize(1024 * 1024 + 10, b'a');
    body.extend_from_slice(br#""}"#);

    assert_eq!(ingest.post_signed(&body, SECRET).await.status(), 413);

    assert!(drain(&ingest.topology().jobs_queue()).await.is_empty());
    assert!(ingest
        .metrics()
        .await
        .contains(r#"ingest_webhook_requests_total{outcome="oversize"} 1"#));
    ingest.stop().await;
}

#[tokio::test]
async fn signed_garbage_is_kept_in_the_rejected_queue_and_acknowledged() {
    let ingest = TestIngest::spawn().await;
    let garbage: [&[u8]; 3] = [b"this is not json", br#"{"object":"instagram"}"#, b"\xff\xfe{"];

    for body in garbage {
        assert_eq!(ingest.post_signed(body, SECRET).await.status(), 200);
    }

    assert!(drain(&ingest.topology().jobs_queue()).await.is_empty());
    let rejected = drain(&ingest.topology().rejected_queue()).await;
    let mut bodies: Vec<Vec<u8>> = rejected.iter().map(|r| r.body.clone()).collect();
    bodies.sort();
    let mut expected: Vec<Vec<u8>> = garbage.iter().map(|b| b.to_vec()).collect();
    expected.sort();
    assert_eq!(bodies, expected);
    let reason = omnidm_shared::topology::header_str(rejected[0].headers.as_ref(), "x-reject-reason");
    assert!(reason.is_some_and(|r| r.contains("not a Meta webhook envelope")));
    ingest.stop().await;
}

#[tokio::test]
async fn broker_down_is_503_and_ingest_recovers_by_itself() {
    let proxy = BrokerProxy::start().await;
    let ingest = TestIngest::spawn_with(config(&proxy.url(), &unique_prefix()), true).await;
    let body = fixture("ig_text_message_real_raw.json");
    assert_eq!(ingest.post_signed(&body, SECRET).await.status(), 200);

    proxy.cut();
    let readyz = || async {
        ingest
            .client
            .get(format!("{}/readyz", ingest.url))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert!(eventually(Duration::from_secs(10), || async { readyz().await == 503 }).await);
    let refused = ingest.post_signed(&body, SECRET).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let health = ingest
        .client
        .get(format!("{}/healthz", ingest.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "liveness does not depend on the broker");

    proxy.restore();
    assert!(eventually(Duration::from_secs(20), || async { readyz().await == 200 }).await);
    assert_eq!(ingest.post_signed(&body, SECRET).await.status(), 200);

    assert_eq!(
        drain(&ingest.topology().jobs_queue()).await.len(),
        2,
        "the 503'd request was not queued"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn a_broker_that_is_unreachable_from_the_start_is_503_not_a_crash() {
    let ingest = TestIngest::spawn_with(
        config("amqp://guest:guest@127.0.0.1:9/%2f", &unique_prefix()),
        false,
    )
    .await;
    let response = ingest
        .post_signed(&fixture("ig_text_message_real_raw.json"), SECRET)
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let metrics = ingest.metrics().await;
    assert!(metrics.contains(r#"ingest_webhook_requests_total{outcome="unavailable"} 1"#));
    assert!(metrics.contains(r#"ingest_publish_failures_total{reason="unavailable"} 1"#));
    ingest.stop().await;
}
