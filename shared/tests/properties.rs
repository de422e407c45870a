//! Property tests of the three places untrusted bytes enter: the signature check, the envelope splitter
//! and the event classifier. Arbitrary bytes and mutated real payloads (fixtures/meta) must never
//! panic, never verify without the secret, and always end in one of the documented outcomes.
//!
//! 256 cases per property by default; `PROPTEST_CASES=100000 cargo test -p omnidm-shared --test
//! properties` for a longer run.

use bytes::Bytes;
use omnidm_shared::job::EventSource;
use omnidm_shared::meta::envelope::split;
use omnidm_shared::meta::event::classify;
use omnidm_shared::signature::{sign, SignatureError, WebhookVerifier};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::Value;

const SECRET: &str = "property_secret";

fn verifier() -> WebhookVerifier {
    WebhookVerifier::new(vec![
        SecretString::from(SECRET.to_owned()),
        SecretString::from("rotated_secret".to_owned()),
    ])
}

fn fixtures() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/meta");
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    all.sort();
    assert!(all.len() >= 10, "the fixtures are there");
    all
}

/// Splits and classifies like ingest and the worker do; must not panic, whatever the bytes.
fn process(body: &[u8]) -> usize {
    match split(body) {
        Ok(batch) => {
            for event in &batch.events {
                // Every split event is valid JSON on its own (it is published as such).
                serde_json::from_str::<&serde_json::value::RawValue>(event.event.get())
                    .expect("a split event is JSON");
                let _ = classify(event.source, event.event.get());
            }
            batch.events.len()
        }
        Err(_) => 0,
    }
}

/// A JSON value of any shape, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::String),
        "[0-9]{1,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("sender".to_owned()),
                    Just("recipient".to_owned()),
                    Just("timestamp".to_owned()),
                    Just("message".to_owned()),
                    Just("mid".to_owned()),
                    Just("text".to_owned()),
                    Just("is_echo".to_owned()),
                    Just("attachments".to_owned()),
                    Just("reaction".to_owned()),
                    Just("read".to_owned()),
                    Just("postback".to_owned()),
                    Just("id".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the value at the `n`th node (depth-first) of `doc` with `replacement`, or deletes it from its
/// object.
fn mutate(doc: &mut Value, n: &mut usize, replacement: &Value, delete: bool) -> bool {
    match doc {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if *n == 0 {
                    if delete {
                        map.remove(&key);
                    } else {
                        map.insert(key, replacement.clone());
                    }
                    return true;
                }
                *n -= 1;
                if mutate(map.get_mut(&key).expect("key exists"), n, replacement, delete) {
                    return true;
                }
            }
            false
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                if *n == 0 {
                    *item = replacement.clone();
                    return true;
                }
                *n -= 1;
                if mutate(item, n, replacement, delete) {
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

proptest! {
    #[test]
    fn arbitrary_headers_and_bodies_never_verify(body in prop::collection::vec(any::<u8>(), 0..512), header in ".{0,80}") {
        let genuine = sign(SECRET.as_bytes(), &body);
        prop_assume!(header != genuine);
        prop_assert!(verifier().verify(Some(header.as_bytes()), Bytes::from(body)).is_err());
    }

    #[test]
    fn a_signature_by_another_secret_never_verifies(body in prop::collection::vec(any::<u8>(), 0..512), other in "[a-z0-9]{1,40}") {
        prop_assume!(other != SECRET && other != "rotated_secret");
        let header = sign(other.as_bytes(), &body);
        prop_assert_eq!(
            verifier().verify(Some(header.as_bytes()), Bytes::from(body)).unwrap_err(),
            SignatureError::Mismatch
        );
    }

    #[test]
    fn any_change_to_a_signed_body_breaks_the_signature(body in prop::collection::vec(any::<u8>(), 1..512), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let header = sign(SECRET.as_bytes(), &body);
        prop_assert!(verifier().verify(Some(header.as_bytes()), Bytes::from(body.clone())).is_ok());
        let mut changed = body.clone();
        let i = at.index(changed.len());
        changed[i] ^= flip;
        prop_assert!(verifier().verify(Some(header.as_bytes()), Bytes::from(changed)).is_err());
        let mut longer = body;
        longer.push(b' ');
        prop_assert!(verifier().verify(Some(header.as_bytes()), Bytes::from(longer)).is_err());
    }

    #[test]
    fn header_variants_of_a_valid_signature_are_refused(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let header = sign(SECRET.as_bytes(), &body);
        let hex = header.trim_start_matches("sha256=");
        for variant in [
            format!("sha1={hex}"),
            format!("SHA256={hex}"),
            hex.to_owned(),
            format!("sha256={}", &hex[..63]),
            format!("sha256={hex}0"),
            format!("sha256= {hex}"),
        ] {
            prop_assert!(verifier().verify(Some(variant.as_bytes()), Bytes::from(body.clone())).is_err(), "{}", variant);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_splitter_or_classifier(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        process(&body);
    }

    #[test]
    fn byte_level_mutations_of_real_payloads_never_panic(which in any::<prop::sample::Index>(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)) {
        let all = fixtures();
        let mut body = all[which.index(all.len())].clone();
        for (at, byte, op) in edits {
            if body.is_empty() { break; }
            let i = at.index(body.len());
            match op {
                0 => body[i] = byte,
                1 => body.truncate(i),
                _ => body.insert(i, byte),
            }
        }
        process(&body);
    }

    #[test]
    fn structural_mutations_of_real_payloads_never_panic(which in any::<prop::sample::Index>(), node in 0usize..200, replacement in json_value(), delete in any::<bool>()) {
        let all = fixtures();
        let mut doc: Value = serde_json::from_slice(&all[which.index(all.len())]).unwrap();
        let mut n = node;
        mutate(&mut doc, &mut n, &replacement, delete);
        process(serde_json::to_string(&doc).unwrap().as_bytes());
    }

    #[test]
    fn arbitrary_json_events_classify_without_panicking(event in json_value()) {
        let raw = serde_json::to_string(&event).unwrap();
        for source in [EventSource::Messaging, EventSource::Standby, EventSource::Changes] {
            let result = classify(source, &raw);
            // Only non-objects are refused; any object gets a kind (possibly "unknown").
            prop_assert_eq!(result.is_ok(), event.is_object(), "{}", raw);
        }
    }
}

#[test]
fn every_fixture_splits_and_classifies() {
    for body in fixtures() {
        assert!(process(&body) > 0);
    }
}

#[test]
fn deep_nesting_and_huge_arrays_are_refused_or_handled_without_overflow() {
    // serde_json refuses nesting beyond 128 levels instead of overflowing the stack.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(process(deep.as_bytes()), 0);
    // Deep nesting inside an event (within the 1 MiB limit): the splitter passes the event's bytes on
    // untouched (the other events of the batch still flow). The classifier refuses a too-deep array (the
    // worker dead-letters it as unparseable, kept for inspection) and reads a too-deep object as an
    // unknown event with its top-level keys: no stack overflow anywhere.
    for (open, close, classifies) in [("[", "]", false), (r#"{"a":"#, "}", true)] {
        let deep_event = format!(
            r#"{{"object":"instagram","entry":[{{"id":"1","time":1,"messaging":[{}1{},{{"message":{{"mid":"ok","text":"fine"}},"timestamp":1}}]}}]}}"#,
            open.repeat(200_000),
            close.repeat(200_000)
        );
        let batch = split(deep_event.as_bytes()).expect("the envelope itself is fine");
        assert_eq!(batch.events.len(), 2);
        assert_eq!(
            classify(batch.events[0].source, batch.events[0].event.get()).is_ok(),
            classifies
        );
        assert!(classify(batch.events[1].source, batch.events[1].event.get()).is_ok());
    }
    let many: Vec<String> = (0..20_000)
        .map(|i| format!(r#"{{"sender":{{"id":"{i}"}},"recipient":{{"id":"1"}},"timestamp":1,"message":{{"mid":"m{i}","text":"x"}}}}"#))
        .collect();
    let wide = format!(
        r#"{{"object":"instagram","entry":[{{"id":"1","time":1,"messaging":[{}]}}]}}"#,
        many.join(",")
    );
    assert_eq!(process(wide.as_bytes()), 20_000);
}

#[test]
fn duplicate_keys_invalid_utf8_and_numbers_as_strings() {
    // Duplicate keys in the envelope: refused, never silently resolved one way.
    let duplicate = br#"{"object":"instagram","object":"page","entry":[]}"#;
    assert!(split(duplicate).is_err());
    // Invalid UTF-8 is not JSON.
    let mut invalid =
        br#"{"object":"instagram","entry":[{"id":"1","messaging":[{"message":{"text":""#.to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe]);
    invalid.extend_from_slice(br#""}}]}]}"#);
    assert!(split(&invalid).is_err());
    // Ids and timestamps as numbers or strings are the same event.
    let as_numbers = br#"{"object":"instagram","entry":[{"id":17841400000000001,"time":1,"messaging":[{"sender":{"id":42},"recipient":{"id":17841400000000001},"timestamp":1700000000000,"message":{"mid":"m","text":"hi"}}]}]}"#;
    let as_strings = br#"{"object":"instagram","entry":[{"id":"17841400000000001","time":"1","messaging":[{"sender":{"id":"42"},"recipient":{"id":"17841400000000001"},"timestamp":"1700000000000","message":{"mid":"m","text":"hi"}}]}]}"#;
    let a = split(as_numbers).unwrap();
    let b = split(as_strings).unwrap();
    assert_eq!(a.events[0].entry_id, b.events[0].entry_id);
    let ea = classify(a.events[0].source, a.events[0].event.get()).unwrap();
    let eb = classify(b.events[0].source, b.events[0].event.get()).unwrap();
    assert_eq!(ea.sender, eb.sender);
    assert_eq!(ea.timestamp_ms, eb.timestamp_ms);
    assert_eq!(ea.kind, eb.kind);
}
