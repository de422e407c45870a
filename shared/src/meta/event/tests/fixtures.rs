//! Every payload in `fixtures/meta/` classifies to the kind and fields Meta's documentation describes.

use super::*;

fn id(s: &str) -> Option<ExternalId> {
    Some(ExternalId::from(s))
}

#[test]
fn a_real_instagram_text_message_is_a_message_with_its_text_ids_and_millisecond_time() {
    let (entry_id, event) = only_event("ig_text_message_real_raw.json");
    assert_eq!(event.sender, id("1129842642640637"));
    assert_eq!(event.recipient, id("17841400538867190"));
    assert_eq!(event.timestamp_ms, Some(1_762_022_346_848));
    assert!(!event.is_dashboard_test(&entry_id));
    let message = inbound(event);
    assert!(message
        .mid
        .starts_with("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwNTM4ODY3MTkw"));
    assert_eq!(message.text.as_deref(), Some("OI"));
    assert!(message.attachments.is_empty() && message.reply_to.is_none() && !message.is_self);
    assert_eq!(message.text_for_ai(), "OI");
}

#[test]
fn a_real_read_receipt_has_no_sender_or_recipient_but_has_its_mid() {
    let (entry_id, event) = only_event("ig_messaging_seen_real_raw.json");
    assert_eq!((event.sender.as_ref(), event.recipient.as_ref()), (None, None));
    assert_eq!(event.timestamp_ms, Some(1_784_200_184_302));
    assert!(!event.is_dashboard_test(&entry_id));
    match event.kind {
        EventKind::Read {
            mid: Some(mid),
            watermark: None,
        } => assert!(mid.ends_with("NgZDZD")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_dashboard_reaction_test_is_a_reaction_flagged_as_a_test_with_its_odd_timestamp_read_as_seconds() {
    let (entry_id, event) = only_event("ig_reaction_dashboard_test_raw.json");
    assert_eq!(entry_id, "0");
    assert!(event.is_dashboard_test(&entry_id));
    assert!(
        event.is_dashboard_test("17841400538867190"),
        "the fake ids alone mark it as a test"
    );
    assert_eq!(event.timestamp_ms, Some(233_445_667_000));
    let expected = EventKind::Reaction {
        mid: "random_mid".into(),
        action: ReactionAction::React,
        reaction: Some("love".into()),
        emoji: Some("\u{2764}\u{fe0f}".into()),
    };
    assert_eq!(event.kind, expected);
}

#[test]
fn the_changes_format_dashboard_test_is_a_message_with_its_string_seconds_timestamp_in_ms() {
    let events = classify_fixture("ig_messages_dashboard_test_changes_format.json");
    let [(entry_id, EventSource::Changes, event)] = &events[..] else {
        panic!("{events:?}")
    };
    assert!(event.is_dashboard_test(entry_id));
    assert_eq!(event.sender, id("12334"));
    assert_eq!(event.recipient, id("23245"));
    assert_eq!(event.timestamp_ms, Some(1_527_459_824_000));
    let message = inbound(event.clone());
    assert_eq!(
        (message.mid.as_str(), message.text.as_deref()),
        ("random_mid", Some("random_text"))
    );
}

#[test]
fn a_story_reply_carries_the_story_and_tells_the_ai_it_replies_to_our_story() {
    let message = inbound(only_event("ig_story_reply_doc.json").1);
    let story = ReplyTo::Story {
        id: Some("STORY-ID".into()),
        url: Some("CDN-URL".into()),
    };
    assert_eq!(message.reply_to, Some(story));
    assert_eq!(message.text_for_ai(), "[reply to your story] MESSAGE-TEXT");
}

#[test]
fn a_story_mention_is_an_attachment_only_message() {
    let message = inbound(only_event("ig_story_mention_doc.json").1);
    assert_eq!(message.text, None);
    let mention = Attachment {
        kind: AttachmentKind::StoryMention,
        url: Some("<CDN_URL>".into()),
        title: None,
        sticker_id: None,
    };
    assert_eq!(message.attachments, [mention]);
    assert_eq!(message.text_for_ai(), "[story mention]");
}

#[test]
fn a_documented_reaction_is_a_react_with_reaction_and_emoji() {
    let (_, event) = only_event("ig_message_reactions_doc.json");
    assert_eq!(event.kind.name(), "reaction");
    assert_eq!(event.kind.mid(), Some("MESSAGE-ID"));
    assert!(matches!(
        event.kind,
        EventKind::Reaction {
            action: ReactionAction::React,
            emoji: Some(_),
            ..
        }
    ));
}

#[test]
fn a_postback_keeps_its_mid_title_and_payload() {
    let (_, event) = only_event("ig_postback_doc.json");
    let expected = EventKind::Postback {
        mid: Some("MESSAGE-ID".into()),
        title: Some("SELECTED-ICEBREAKER-REPLY-OR-CTA-BUTTON".into()),
        payload: Some("CUSTOMER-RESPONSE-PAYLOAD".into()),
    };
    assert_eq!(event.kind, expected);
}

#[test]
fn an_igme_referral_is_a_standalone_referral() {
    let (_, event) = only_event("ig_referral_igme_doc.json");
    let expected = EventKind::Referral {
        r#ref: Some("INFORMATION-INCLUDED-IN-REF-PARAMETER-OF-IGME-LINK".into()),
        source: Some("IGME-SOURCE-LINK".into()),
        kind: Some("OPEN_THREAD".into()),
    };
    assert_eq!(event.kind, expected);
}

#[test]
fn echo_deleted_unsupported_inline_reply_quick_reply_and_ephemeral_variants_each_classify() {
    let events = classify_fixture("ig_echo_deleted_unsupported_variants_doc.json");
    let kinds: Vec<EventKind> = events.into_iter().map(|(_, _, e)| e.kind).collect();
    let [echo, deleted, unsupported, inline, quick, ephemeral] = &kinds[..] else {
        panic!("{kinds:?}")
    };
    let expected_echo = EchoMessage {
        mid: "MESSAGE-ID".into(),
        text: Some("MESSAGE-TEXT".into()),
        app_id: None,
        attachments: vec![],
    };
    assert_eq!(echo, &EventKind::Echo(expected_echo));
    assert_eq!(
        deleted,
        &EventKind::Deleted {
            mid: "MESSAGE-ID-2".into()
        }
    );
    assert_eq!(
        unsupported,
        &EventKind::Unsupported {
            mid: "MESSAGE-ID-3".into()
        }
    );
    let inline = inbound(Event {
        sender: None,
        recipient: None,
        timestamp_ms: None,
        kind: inline.clone(),
    });
    assert_eq!(
        inline.reply_to,
        Some(ReplyTo::Message {
            mid: "MESSAGE-ID".into()
        })
    );
    assert_eq!(inline.text_for_ai(), "MESSAGE-TEXT");
    let EventKind::Message(quick) = quick else {
        panic!("{quick:?}")
    };
    assert_eq!(
        quick.quick_reply_payload.as_deref(),
        Some("CUSTOMER-RESPONSE-PAYLOAD")
    );
    let EventKind::Message(ephemeral) = ephemeral else {
        panic!("{ephemeral:?}")
    };
    assert_eq!(ephemeral.attachments[0].kind, AttachmentKind::Ephemeral);
    assert_eq!(ephemeral.attachments[0].url, None);
    assert_eq!(ephemeral.text_for_ai(), "[disappearing media]");
}

#[test]
fn a_message_edit_with_placeholder_strings_keeps_mid_and_text_and_drops_the_placeholders() {
    let (entry_id, event) = only_event("ig_message_edit_doc.json");
    assert_eq!(event.sender, id("<INSTAGRAM_SCOPED_ID>"));
    assert_eq!(
        event.recipient.as_ref().map(ExternalId::as_str),
        Some(entry_id.as_str())
    );
    assert_eq!(event.timestamp_ms, None);
    let expected = EventKind::Edit {
        mid: "<MESSAGE_ID>".into(),
        text: Some("<USER_EDITED_MESSAGE>".into()),
        num_edit: None,
    };
    assert_eq!(event.kind, expected);
}

#[test]
fn a_messenger_standby_echo_of_a_template_is_an_echo_with_its_app_id_and_attachment() {
    let events = classify_fixture("messenger_page_standby_echo_doc.json");
    let [(_, EventSource::Standby, event)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(event.sender, id("<PAGE_ID>"));
    let EventKind::Echo(echo) = &event.kind else {
        panic!("{:?}", event.kind)
    };
    assert!(echo.mid.starts_with("qT7ywaKpO9"));
    assert_eq!(echo.app_id.as_deref(), Some("<APPID>"));
    let template = Attachment {
        kind: AttachmentKind::Template,
        url: Some("https://www.facebook.com/commerce/update/".into()),
        title: None,
        sticker_id: None,
    };
    assert_eq!(echo.attachments, [template]);
}

#[test]
fn a_messenger_text_with_quick_reply_and_an_image_message_both_classify() {
    let events = classify_fixture("messenger_page_text_and_attachment_doc.json");
    let [(_, _, text), (_, _, image)] = &events[..] else {
        panic!("{events:?}")
    };
    let text = inbound(text.clone());
    assert_eq!(text.text.as_deref(), Some("hello, world!"));
    assert_eq!(
        text.quick_reply_payload.as_deref(),
        Some("<DEVELOPER_DEFINED_PAYLOAD>")
    );
    assert_eq!(image.timestamp_ms, Some(1_518_479_195_308));
    let image = inbound(image.clone());
    assert_eq!(image.mid, "mid.$cAAJdkrCd2ORnva8ErFhjGm0X_Q_c");
    assert_eq!(image.attachments[0].kind, AttachmentKind::Image);
    assert_eq!(image.attachments[0].url.as_deref(), Some("<ATTACHMENT_URL>"));
    assert_eq!(image.text_for_ai(), "[image]");
}

#[test]
fn an_instagram_message_with_image_and_video_lists_both_for_the_ai() {
    let message = inbound(only_event("ig_message_with_attachments_doc.json").1);
    let kinds: Vec<_> = message.attachments.iter().map(|a| a.kind.clone()).collect();
    assert_eq!(kinds, [AttachmentKind::Image, AttachmentKind::Video]);
    assert_eq!(message.text_for_ai(), "[image] [video]");
}

#[test]
fn every_fixture_event_is_recognised_and_only_the_dashboard_ones_are_tests() {
    let dir = format!("{}/../fixtures/meta", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for file in std::fs::read_dir(dir).unwrap() {
        let name = file.unwrap().file_name().into_string().unwrap();
        for (entry_id, _, event) in classify_fixture(&name) {
            seen += 1;
            let kind = event.kind.name();
            assert!(
                !["unknown", "malformed", "change_field"].contains(&kind),
                "{name}: {kind}"
            );
            assert_eq!(
                event.is_dashboard_test(&entry_id),
                name.contains("dashboard_test"),
                "{name}"
            );
        }
    }
    assert!(seen >= 19, "only {seen} fixture events");
}
