//! What the AI reads of a message, and what metrics and logs see of an event.

use super::*;

fn message(text: Option<&str>, kinds: &[AttachmentKind], reply_to: Option<ReplyTo>) -> InboundMessage {
    InboundMessage {
        mid: "m".into(),
        text: text.map(String::from),
        attachments: kinds
            .iter()
            .map(|kind| Attachment {
                kind: kind.clone(),
                url: None,
                title: None,
                sticker_id: None,
            })
            .collect(),
        reply_to,
        quick_reply_payload: None,
        referral: None,
        is_self: false,
    }
}

fn story() -> Option<ReplyTo> {
    Some(ReplyTo::Story { id: None, url: None })
}

#[test]
fn the_ai_reads_text_then_a_description_of_each_attachment() {
    use AttachmentKind::*;
    assert_eq!(message(Some(" hi "), &[], None).text_for_ai(), "hi");
    assert_eq!(
        message(Some("look"), &[Image], None).text_for_ai(),
        "look [image]"
    );
    assert_eq!(message(None, &[Audio], None).text_for_ai(), "[voice message]");
    assert_eq!(
        message(None, &[StoryMention], None).text_for_ai(),
        "[story mention]"
    );
    assert_eq!(
        message(None, &[Ephemeral], None).text_for_ai(),
        "[disappearing media]"
    );
    assert_eq!(
        message(None, &[IgReel, Share], None).text_for_ai(),
        "[shared reel] [shared post]"
    );
    let inline = Some(ReplyTo::Message { mid: "x".into() });
    assert_eq!(message(Some("yes"), &[], inline).text_for_ai(), "yes");
}

#[test]
fn a_story_reply_is_prefixed_even_when_it_is_only_media() {
    assert_eq!(
        message(Some("wow"), &[], story()).text_for_ai(),
        "[reply to your story] wow"
    );
    assert_eq!(
        message(None, &[AttachmentKind::Image], story()).text_for_ai(),
        "[reply to your story] [image]"
    );
    assert_eq!(message(None, &[], story()).text_for_ai(), "[reply to your story]");
}

#[test]
fn a_message_with_nothing_readable_is_an_empty_message_never_an_empty_string() {
    assert_eq!(message(None, &[], None).text_for_ai(), "[empty message]");
    assert_eq!(message(Some("  \n"), &[], None).text_for_ai(), "[empty message]");
    let event = messaging(r#"{"sender":{"id":"1"},"message":{"mid":"m","text":""}}"#);
    assert_eq!(inbound(event).text_for_ai(), "[empty message]");
}

#[test]
fn every_kind_has_a_stable_snake_case_name() {
    let cases = [
        (r#"{"message":{"mid":"m"}}"#, "message"),
        (r#"{"postback":{}}"#, "postback"),
        (r#"{"message":{"mid":"m","is_echo":true}}"#, "echo"),
        (r#"{"reaction":{"mid":"m","action":"react"}}"#, "reaction"),
        (r#"{"reaction":{"mid":"m","action":"unreact"}}"#, "unreact"),
        (r#"{"read":{}}"#, "read"),
        (r#"{"delivery":{}}"#, "delivery"),
        (r#"{"message_edit":{"mid":"m"}}"#, "edit"),
        (r#"{"message":{"mid":"m","is_deleted":true}}"#, "deleted"),
        (r#"{"message":{"mid":"m","is_unsupported":true}}"#, "unsupported"),
        (r#"{"referral":{}}"#, "referral"),
        (r#"{"optin":{}}"#, "optin"),
        (r#"{"request_thread_control":{}}"#, "handover"),
        (r#"{"field":"comments","value":{}}"#, "change_field"),
        (r#"{"message":{}}"#, "malformed"),
        (r#"{"app_roles":{}}"#, "unknown"),
    ];
    for (raw, name) in cases {
        assert_eq!(
            classify(EventSource::Changes, raw).unwrap().kind.name(),
            name,
            "{raw}"
        );
    }
}

#[test]
fn the_mid_of_an_event_is_its_deduplication_key() {
    assert_eq!(messaging(r#"{"message":{"mid":"a"}}"#).kind.mid(), Some("a"));
    assert_eq!(messaging(r#"{"message_edit":{"mid":"b"}}"#).kind.mid(), Some("b"));
    assert_eq!(
        messaging(r#"{"delivery":{"mids":["c","d"]}}"#).kind.mid(),
        Some("c")
    );
    assert_eq!(messaging(r#"{"read":{}}"#).kind.mid(), None);
    assert_eq!(messaging(r#"{"referral":{"ref":"r"}}"#).kind.mid(), None);
}

#[test]
fn a_real_event_is_not_a_dashboard_test_but_any_fake_marker_makes_one() {
    let real = r#"{"sender":{"id":"1129842642640637"},"recipient":{"id":"178"},"message":{"mid":"aWdf"}}"#;
    assert!(!messaging(real).is_dashboard_test("178"));
    assert!(messaging(real).is_dashboard_test("0"));
    assert!(messaging(r#"{"sender":{"id":12334},"message":{"mid":"aWdf"}}"#).is_dashboard_test("178"));
    assert!(messaging(r#"{"recipient":{"id":"23245"},"read":{}}"#).is_dashboard_test("178"));
    assert!(messaging(r#"{"message":{"mid":"random_mid"}}"#).is_dashboard_test("178"));
}

#[test]
fn external_ids_deserialise_from_strings_or_integers_and_serialise_as_strings() {
    let ids: Vec<ExternalId> =
        serde_json::from_str(r#"["17841400538867190", 1517776481860111, -3]"#).unwrap();
    let texts: Vec<&str> = ids.iter().map(ExternalId::as_str).collect();
    assert_eq!(texts, ["17841400538867190", "1517776481860111", "-3"]);
    assert_eq!(serde_json::to_string(&ids[1]).unwrap(), r#""1517776481860111""#);
    assert!(serde_json::from_str::<ExternalId>("1.5").is_err());
    assert!(serde_json::from_str::<ExternalId>("{}").is_err());
}

#[test]
fn attachment_kinds_round_trip_through_their_wire_names() {
    for wire in [
        "image",
        "ig_reel",
        "story_mention",
        "ephemeral",
        "template",
        "hologram",
        "",
    ] {
        assert_eq!(AttachmentKind::from_wire(wire).as_str(), wire);
    }
    assert_eq!(AttachmentKind::from_wire("MEDIA"), AttachmentKind::Media);
}
