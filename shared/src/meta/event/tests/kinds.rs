//! Kinds beyond the fixtures: precedence between flags, reactions, change items, Messenger-only events.

use super::*;

#[test]
fn echo_wins_over_deleted_and_deleted_wins_over_unsupported() {
    let echo = messaging(
        r#"{"message":{"mid":"m","is_echo":true,"is_deleted":true,"attachments":[{"type":"image"}]}}"#,
    );
    assert_eq!(echo.kind.name(), "echo");
    let deleted = messaging(r#"{"message":{"mid":"m","is_deleted":true,"is_unsupported":true,"text":"x"}}"#);
    assert_eq!(deleted.kind, EventKind::Deleted { mid: "m".into() });
    let not_flagged = messaging(r#"{"message":{"mid":"m","is_echo":false,"is_deleted":0}}"#);
    assert_eq!(not_flagged.kind.name(), "message");
}

#[test]
fn a_message_or_reaction_or_edit_without_a_mid_is_malformed() {
    for raw in [
        r#"{"message":{"text":"hi"}}"#,
        r#"{"message":{"mid":"","text":"hi"}}"#,
        r#"{"message":{"is_echo":true}}"#,
        r#"{"reaction":{"action":"react"}}"#,
        r#"{"message_edit":{"text":"x"}}"#,
        r#"{"field":"messages","value":[]}"#,
    ] {
        let event = classify(EventSource::Changes, raw).unwrap();
        assert_eq!(event.kind.name(), "malformed", "{raw}");
    }
}

#[test]
fn unreact_has_no_reaction_and_an_unknown_action_is_read_from_the_content() {
    let kind = |raw: &str| messaging(raw).kind;
    let unreact = kind(r#"{"reaction":{"mid":"m","action":"unreact"}}"#);
    let expected = EventKind::Reaction {
        mid: "m".into(),
        action: ReactionAction::Unreact,
        reaction: None,
        emoji: None,
    };
    assert_eq!(unreact, expected);
    assert_eq!(unreact.name(), "unreact");
    assert_eq!(
        kind(r#"{"reaction":{"mid":"m","action":"boop","emoji":"x"}}"#).name(),
        "reaction"
    );
    assert_eq!(kind(r#"{"reaction":{"mid":"m"}}"#).name(), "unreact");
    assert_eq!(
        kind(r#"{"reaction":{"mid":"m","action":"REACT"}}"#).name(),
        "reaction"
    );
}

#[test]
fn change_items_classify_messaging_fields_by_value_and_count_the_rest() {
    let change = |raw: &str| classify(EventSource::Changes, raw).unwrap();
    let comment = change(r#"{"field":"comments","value":{"from":{"id":"1"},"text":"nice"}}"#);
    assert_eq!(
        comment.kind,
        EventKind::ChangeField {
            field: "comments".into()
        }
    );
    let postback = change(
        r#"{"field":"messaging_postbacks","value":{"sender":{"user_ref":"u"},"recipient":{"id":"p"},
            "timestamp":"1527459824","postback":{"title":"T","payload":"P"}}}"#,
    );
    assert_eq!(postback.kind.name(), "postback");
    assert_eq!(postback.timestamp_ms, Some(1_527_459_824_000));
    let no_field = change(r#"{"sender":{"id":"1"},"message":{"mid":"m","text":"t"}}"#);
    assert_eq!(no_field.kind.name(), "message");
    let mislabelled = messaging(r#"{"field":"mentions","value":{"media_id":"1"}}"#);
    assert_eq!(
        mislabelled.kind,
        EventKind::ChangeField {
            field: "mentions".into()
        }
    );
}

#[test]
fn messenger_receipts_optins_and_handovers_classify() {
    let delivery = messaging(r#"{"delivery":{"mids":["a",2,null],"watermark":1458668856253}}"#);
    let expected = EventKind::Delivery {
        mids: vec!["a".into(), "2".into()],
        watermark: Some(1_458_668_856_253),
    };
    assert_eq!(delivery.kind, expected);
    let read = messaging(r#"{"read":{"watermark":"1458668856"}}"#);
    assert_eq!(
        read.kind,
        EventKind::Read {
            mid: None,
            watermark: Some(1_458_668_856_000)
        }
    );
    let optin = messaging(r#"{"optin":{"type":"notification_messages","ref":"r"}}"#);
    assert_eq!(
        optin.kind,
        EventKind::Optin {
            r#ref: Some("r".into()),
            kind: Some("notification_messages".into())
        }
    );
    let pass = messaging(
        r#"{"pass_thread_control":{"new_owner_app_id":123,"previous_owner_app_id":"9","metadata":"m"}}"#,
    );
    let expected = EventKind::Handover {
        action: HandoverAction::Pass,
        new_owner_app_id: Some("123".into()),
        previous_owner_app_id: Some("9".into()),
        requested_owner_app_id: None,
        metadata: Some("m".into()),
    };
    assert_eq!(pass.kind, expected);
    assert_eq!(messaging(r#"{"take_thread_control":{}}"#).kind.name(), "handover");
}
