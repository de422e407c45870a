//! Odd, wrong and hostile input: every shape Meta is known to vary on, and junk that must never panic.

use super::*;

#[test]
fn ids_sent_as_numbers_become_decimal_strings() {
    let event = messaging(
        r#"{"sender":{"id":1129842642640637},"recipient":{"id":17841400538867190},"timestamp":1,
            "message":{"mid":"m","is_echo":true,"app_id":1517776481860111,
            "attachments":[{"type":"template","payload":{"elements":[{"attachment_id":2457235337685388}]}}]}}"#,
    );
    assert_eq!(event.sender.unwrap().to_string(), "1129842642640637");
    assert_eq!(event.recipient.unwrap().as_str(), "17841400538867190");
    let EventKind::Echo(echo) = event.kind else {
        panic!()
    };
    assert_eq!(echo.app_id.as_deref(), Some("1517776481860111"));
    assert_eq!(echo.attachments[0].kind, AttachmentKind::Template);
}

#[test]
fn a_messenger_sender_with_only_a_user_ref_is_identified_by_it() {
    let event =
        messaging(r#"{"sender":{"user_ref":"ur-1"},"recipient":{"id":"p"},"postback":{"title":"Hi"}}"#);
    assert_eq!(event.sender, Some(ExternalId::from("ur-1")));
    assert_eq!(event.kind.name(), "postback");
}

#[test]
fn timestamps_in_seconds_milliseconds_and_strings_normalise_to_milliseconds() {
    for (raw, expected) in [
        ("1762022346848", Some(1_762_022_346_848)),
        ("1527459824", Some(1_527_459_824_000)),
        (r#""1527459824""#, Some(1_527_459_824_000)),
        (r#"" 1762022346848 ""#, Some(1_762_022_346_848)),
        ("1527459824.75", Some(1_527_459_824_000)),
        (r#""<TIME_WEBHOOK_WAS_TRIGGERED>""#, None),
        ("0", None),
        ("-5", None),
        (r#""NaN""#, None),
        ("1e300", None),
        ("18446744073709551615", None),
        ("true", None),
        ("{}", None),
    ] {
        let event = messaging(&format!(r#"{{"timestamp":{raw},"read":{{}}}}"#));
        assert_eq!(event.timestamp_ms, expected, "timestamp {raw}");
    }
    let event = messaging(r#"{"timestamp":1527459824,"read":{}}"#);
    assert_eq!(event.sent_at().unwrap().to_rfc3339(), "2018-05-27T22:23:44+00:00");
}

#[test]
fn num_edit_is_read_from_a_number_or_a_numeric_string() {
    for (raw, expected) in [
        ("2", Some(2)),
        (r#""3""#, Some(3)),
        (r#""many""#, None),
        ("-1", None),
        ("1.5", None),
    ] {
        let event = messaging(&format!(r#"{{"message_edit":{{"mid":"m","num_edit":{raw}}}}}"#));
        let EventKind::Edit { num_edit, .. } = event.kind else {
            panic!()
        };
        assert_eq!(num_edit, expected, "num_edit {raw}");
    }
}

#[test]
fn an_unknown_attachment_type_is_other_by_name_and_a_missing_type_is_other_empty() {
    let message = inbound(messaging(
        r#"{"message":{"mid":"m","attachments":[{"type":"hologram","payload":{"url":"u"}},{"payload":{}},
            "junk",{"type":"IMAGE","url":"top"}]}}"#,
    ));
    let kinds: Vec<_> = message.attachments.iter().map(|a| a.kind.clone()).collect();
    let expected = [
        AttachmentKind::Other("hologram".into()),
        AttachmentKind::Other(String::new()),
        AttachmentKind::Image,
    ];
    assert_eq!(kinds, expected);
    assert_eq!(message.attachments[2].url.as_deref(), Some("top"));
    assert_eq!(message.text_for_ai(), "[attachment] [attachment] [image]");
}

#[test]
fn an_unknown_event_reports_its_sorted_top_level_keys() {
    let event = messaging(r#"{"timestamp":1,"sender":{"id":"1"},"policy_enforcement":{"action":"block"}}"#);
    let keys = ["policy_enforcement", "sender", "timestamp"]
        .map(String::from)
        .to_vec();
    assert_eq!(event.kind, EventKind::Unknown { keys });
    assert_eq!(messaging("{}").kind, EventKind::Unknown { keys: vec![] });
}

#[test]
fn an_unknown_event_with_many_long_keys_reports_a_bounded_list() {
    let members: Vec<String> = (0..500)
        .map(|i| format!(r#""{i:03}{}":1"#, "é".repeat(100)))
        .collect();
    let event = messaging(&format!("{{{}}}", members.join(",")));
    let EventKind::Unknown { keys } = event.kind else {
        panic!()
    };
    assert_eq!(keys.len(), 20);
    assert!(keys.iter().all(|k| k.chars().count() == 64));
}

#[test]
fn input_that_is_not_a_json_object_is_an_error() {
    for raw in [
        "",
        "not json",
        "[]",
        "[{}]",
        "\"message\"",
        "42",
        "null",
        "true",
        "{\"a\":1} trailing",
        "{",
    ] {
        assert!(classify(EventSource::Messaging, raw).is_err(), "{raw:?}");
        assert!(classify(EventSource::Changes, raw).is_err(), "{raw:?}");
    }
    let err = classify(EventSource::Messaging, "[]").unwrap_err();
    assert_eq!(err.to_string(), "event is an array, not a JSON object");
}

#[test]
fn wrong_types_for_optional_fields_read_as_absent() {
    let message = inbound(messaging(
        r#"{"sender":[1],"recipient":{"id":1.5},"timestamp":[],"message":{"mid":"m","text":{"x":1},
            "attachments":"none","reply_to":{"story":"s"},"quick_reply":"q","referral":"r","is_self":"yes"}}"#,
    ));
    assert_eq!(message.text, None);
    assert!(message.attachments.is_empty());
    assert_eq!(
        (message.reply_to, message.quick_reply_payload, message.referral),
        (None, None, None)
    );
    assert!(!message.is_self);
    let event = messaging(r#"{"message":"hello","reaction":{"mid":"m","emoji":7}}"#);
    assert!(matches!(event.kind, EventKind::Reaction { emoji: Some(ref e), .. } if e == "7"));
}

#[test]
fn a_valid_object_with_an_unrepresentable_number_still_classifies() {
    let event = messaging(r#"{"timestamp":1e400,"message":{"mid":"m","text":"hi"}}"#);
    assert_eq!(event.timestamp_ms, None);
    assert_eq!(inbound(event).text.as_deref(), Some("hi"));
    let event = messaging(r#"{"message":{"mid":"m","n":-1e999}}"#);
    assert_eq!(
        event.kind,
        EventKind::Unknown {
            keys: vec!["message".into()]
        }
    );
}

#[test]
fn arbitrary_junk_never_panics() {
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!(
        r#"{{"message":{}1{}}}"#,
        r#"{"a":"#.repeat(50_000),
        "}".repeat(50_000)
    );
    let deep_unclosed = "{\"a\":".repeat(100_000);
    let huge_numbers = r#"{"sender":{"id":1e308},"timestamp":99999999999999999999999999,
        "message":{"mid":123456789012345678901234567890,"attachments":[{"type":1e5}]}}"#;
    let wrong_everywhere = r#"{"sender":null,"recipient":"r","message":{"mid":["m"],"is_echo":"TRUE"}}"#;
    let nul_and_unicode = "{\"message\":{\"mid\":\"\\u0000\",\"text\":\"\\ud83d\\ude00\"}}";
    for raw in [
        &deep_array,
        &deep_object,
        &deep_unclosed,
        huge_numbers,
        wrong_everywhere,
        nul_and_unicode,
    ] {
        for source in [EventSource::Messaging, EventSource::Standby, EventSource::Changes] {
            if let Ok(event) = classify(source, raw) {
                let _ = (
                    event.kind.name(),
                    event.kind.mid(),
                    event.is_dashboard_test("1"),
                    event.sent_at(),
                );
                if let EventKind::Message(message) = event.kind {
                    assert!(!message.text_for_ai().is_empty());
                }
            }
        }
    }
    assert!(
        classify(EventSource::Messaging, &deep_object).is_ok(),
        "a deep but valid object still classifies"
    );
}
