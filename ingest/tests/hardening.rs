//! Slow, idle and hostile clients cannot exhaust ingest, and every kind of bad input gets one of the
//! documented answers with nothing unverified published.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn host(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Waits until the server closes `stream` (EOF or reset); how long it took, or `None` after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_slow_header_client_is_cut_off_while_real_webhooks_are_served() {
    let ingest = TestIngest::spawn().await;
    let mut slow = TcpStream::connect(host(&ingest.url)).await.unwrap();
    let trickle = async {
        for byte in b"POST /api/webhooks/instagram HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let served = async {
        let body = fixture("ig_text_message_real_raw.json");
        assert_eq!(ingest.post_signed(&body, SECRET).await.status(), 200);
    };
    // The trickle ends only when the server hangs up; the real webhook goes through meanwhile.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(trickle, served) })
        .await
        .expect("the slow client is cut off");
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "not before the header deadline"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn idle_connections_do_not_block_service_and_are_closed() {
    let ingest = TestIngest::spawn().await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(host(&ingest.url)).await.unwrap());
    }
    let body = fixture("ig_text_message_real_raw.json");
    assert_eq!(ingest.post_signed(&body, SECRET).await.status(), 200);
    for stream in idle.iter_mut().take(20) {
        assert!(
            closed_within(stream, Duration::from_secs(6)).await.is_some(),
            "an idle connection is closed after the header deadline"
        );
    }
    ingest.stop().await;
}

#[tokio::test]
async fn beyond_the_connection_limit_new_connections_are_refused_until_one_frees() {
    let mut config = config(AMQP_URL, &unique_prefix());
    config.ingest_max_connections = 4;
    let ingest = TestIngest::spawn_with(config, true).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(host(&ingest.url)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(host(&ingest.url)).await.unwrap();
    let closed = closed_within(&mut extra, Duration::from_secs(1)).await;
    assert!(closed.is_some(), "the fifth connection is closed at once");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = fixture("ig_text_message_real_raw.json");
    assert_eq!(ingest.post_signed(&body, SECRET).await.status(), 200);
    ingest.stop().await;
}

#[tokio::test]
async fn a_client_stalling_mid_body_gets_408_and_nothing_is_published() {
    let mut config = config(AMQP_URL, &unique_prefix());
    config.ingest_request_timeout_ms = 3_500;
    let ingest = TestIngest::spawn_with(config, true).await;
    let body = fixture("ig_text_message_real_raw.json");
    let signature = omnidm_shared::signature::sign(SECRET.as_bytes(), &body);
    let mut stream = TcpStream::connect(host(&ingest.url)).await.unwrap();
    let head = format!(
        "POST /api/webhooks/instagram HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    let mut answer = vec![0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(8), stream.read(&mut answer))
        .await
        .expect("answered before the test gives up")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..read]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(drain(&ingest.topology().jobs_queue()).await.is_empty());
    ingest.stop().await;
}

/// A deterministic sweep of hostile bodies, each signed and unsigned: the answer is always one of the
/// documented ones, unsigned bodies are always 403 and never published, signed ones are always queued
/// (as jobs, or whole in the rejected queue).
#[tokio::test]
async fn every_hostile_body_gets_a_documented_answer_and_unsigned_ones_publish_nothing() {
    let ingest = TestIngest::spawn().await;
    let real = fixture("ig_text_message_real_raw.json");
    let mut bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not json", b"hello".to_vec()),
        ("invalid utf-8", vec![b'{', 0xff, 0xfe, b'}']),
        ("deep nesting", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes()),
        ("duplicate keys", br#"{"object":"instagram","object":"page","entry":[]}"#.to_vec()),
        ("array", b"[]".to_vec()),
        ("null", b"null".to_vec()),
        (
            "numbers as strings",
            br#"{"object":"instagram","entry":[{"id":"17841400000000001","time":"1","messaging":[{"sender":{"id":"42"},"recipient":{"id":"17841400000000001"},"timestamp":"1700000000000","message":{"mid":"m.str","text":"hi"}}]}]}"#.to_vec(),
        ),
        ("truncated", real[..real.len() / 2].to_vec()),
    ];
    let mut events = Vec::new();
    for i in 0..2_000 {
        events.push(format!(
            r#"{{"sender":{{"id":"{i}"}},"recipient":{{"id":"1"}},"timestamp":1,"message":{{"mid":"m.{i}","text":"x"}}}}"#
        ));
    }
    bodies.push((
        "huge array",
        format!(
            r#"{{"object":"instagram","entry":[{{"id":"1","time":1,"messaging":[{}]}}]}}"#,
            events.join(",")
        )
        .into_bytes(),
    ));
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for n in 0..30 {
        let mut mutated = real.clone();
        for _ in 0..(1 + n % 5) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let at = (rng as usize) % mutated.len();
            mutated[at] = (rng >> 32) as u8;
        }
        bodies.push(("mutated fixture", mutated));
    }

    let mut expected_jobs = 0;
    let mut expected_rejected = 0;
    for (name, body) in &bodies {
        let unsigned = ingest.post(body, None).await.status();
        assert_eq!(unsigned, 403, "{name} unsigned");
        let forged = ingest.post(body, Some("sha256=00")).await.status();
        assert_eq!(forged, 403, "{name} forged");
        let signed = ingest.post_signed(body, SECRET).await.status();
        assert_eq!(signed, 200, "{name} signed");
        match omnidm_shared::meta::envelope::split(body) {
            Ok(batch) => expected_jobs += batch.events.len(),
            Err(_) => expected_rejected += 1,
        }
    }
    // Wrong content type, still signed: the signature is what matters, not the header.
    let typed = ingest
        .client
        .post(format!("{}/api/webhooks/instagram", ingest.url))
        .header("content-type", "text/plain")
        .header(
            "x-hub-signature-256",
            omnidm_shared::signature::sign(SECRET.as_bytes(), &real),
        )
        .body(real.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(typed.status(), 200);
    expected_jobs += 1;

    let jobs = drain(&ingest.topology().jobs_queue()).await;
    let rejected = drain(&ingest.topology().rejected_queue()).await;
    assert_eq!(jobs.len(), expected_jobs, "every signed event, nothing unsigned");
    assert_eq!(
        rejected.len(),
        expected_rejected,
        "every signed non-envelope kept whole"
    );
    ingest.stop().await;
}
