//! Meta-shaped webhook bodies, written byte by byte rather than through serde.
//!
//! The service verifies signatures over the exact bytes, so what we sign must look like what Meta sends:
//! keys in Meta's order (`time` before `id`, as in the real capture in META.md §3.2), no whitespace, and
//! non-ASCII escaped as lowercase `\uXXXX` (and `/` as `\/`), which serde_json does not do.
//!
//! Instagram bodies (`object: instagram`) put `time` before `id` in each entry, as the real capture does;
//! every other object (Messenger's `page`) puts `id` first, as Meta's Messenger examples do. Events go in
//! `messaging[]`, or in `standby[]` ([`Channel`]) while another app owns the thread (META.md §3.1).

use serde_json::Value;

/// One messaging event inside an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A text DM from a user to the account (or Page).
    Text {
        /// The sender's IGSID (or PSID).
        user_id: String,
        /// The message id (dedup key).
        mid: String,
        /// The text.
        text: String,
        /// When the user sent it, in ms.
        timestamp_ms: i64,
    },
    /// The echo of a message the account sent to a user (from the app or the API).
    Echo {
        /// The recipient's IGSID.
        user_id: String,
        /// The message id.
        mid: String,
        /// The text.
        text: String,
        /// When it was sent, in ms.
        timestamp_ms: i64,
    },
    /// The echo of a message an app sent through the Send API: like [`Event::Echo`], plus the sending
    /// app's `app_id` (written as a bare number when it is all digits, as Meta does), which is how a
    /// service tells its own replies from a person's replies in the Page inbox ([`crate::PAGE_INBOX_APP_ID`]).
    ApiEcho {
        /// The recipient's IGSID or PSID.
        user_id: String,
        /// The message id.
        mid: String,
        /// The text.
        text: String,
        /// When it was sent, in ms.
        timestamp_ms: i64,
        /// The app that sent it.
        app_id: String,
    },
    /// Any other event, as exact JSON bytes (a reaction, a read, something new).
    Raw(String),
}

/// Which list of an entry carries its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Channel {
    /// `messaging[]`: the app receiving the webhook owns the thread (or no handover is in use).
    #[default]
    Messaging,
    /// `standby[]`: another app owns the thread; the receiving app only listens.
    Standby,
}

impl Channel {
    fn key(self) -> &'static str {
        match self {
            Channel::Messaging => "messaging",
            Channel::Standby => "standby",
        }
    }
}

/// One `entry[]` element: events for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The Instagram account id, or the Page id for Messenger (`entry.id`).
    pub account_id: String,
    /// When Meta sent the notification, in ms (`entry.time`).
    pub time_ms: i64,
    /// The events of `messaging[]` (or `standby[]`), in order.
    pub events: Vec<Event>,
}

/// A single text DM from `user_id` to `account_id`, as Meta delivers it.
pub fn text_message(account_id: &str, user_id: &str, mid: &str, text: &str, timestamp_ms: i64) -> Vec<u8> {
    single(
        account_id,
        timestamp_ms,
        Event::Text {
            user_id: user_id.to_string(),
            mid: mid.to_string(),
            text: text.to_string(),
            timestamp_ms,
        },
    )
}

/// The echo of a message `account_id` sent to `user_id` (`is_echo: true`, sender and recipient swapped).
pub fn echo(account_id: &str, user_id: &str, mid: &str, text: &str, timestamp_ms: i64) -> Vec<u8> {
    single(
        account_id,
        timestamp_ms,
        Event::Echo {
            user_id: user_id.to_string(),
            mid: mid.to_string(),
            text: text.to_string(),
            timestamp_ms,
        },
    )
}

/// The echo of a message the service (app `app_id`) sent from `account_id` to `user_id` through the Send
/// API, as Meta delivers it: [`echo`] plus `app_id`.
pub fn api_echo(
    account_id: &str,
    user_id: &str,
    mid: &str,
    text: &str,
    timestamp_ms: i64,
    app_id: &str,
) -> Vec<u8> {
    single(
        account_id,
        timestamp_ms,
        Event::ApiEcho {
            user_id: user_id.to_string(),
            mid: mid.to_string(),
            text: text.to_string(),
            timestamp_ms,
            app_id: app_id.to_string(),
        },
    )
}

/// A single Messenger text message from the customer `psid` to the Page `page_id` (`object: page`).
pub fn messenger_text_message(
    page_id: &str,
    psid: &str,
    mid: &str,
    text: &str,
    timestamp_ms: i64,
) -> Vec<u8> {
    let event = Event::Text {
        user_id: psid.to_string(),
        mid: mid.to_string(),
        text: text.to_string(),
        timestamp_ms,
    };
    envelope("page", Channel::Messaging, &[entry(page_id, timestamp_ms, event)])
}

/// The Messenger echo of a message app `app_id` sent from the Page `page_id` to the customer `psid`.
pub fn messenger_echo(
    page_id: &str,
    psid: &str,
    mid: &str,
    text: &str,
    timestamp_ms: i64,
    app_id: &str,
) -> Vec<u8> {
    let event = Event::ApiEcho {
        user_id: psid.to_string(),
        mid: mid.to_string(),
        text: text.to_string(),
        timestamp_ms,
        app_id: app_id.to_string(),
    };
    envelope("page", Channel::Messaging, &[entry(page_id, timestamp_ms, event)])
}

/// One event from the customer `user_id` to the account or Page `entry_id`, in `messaging[]` or (when
/// `standby`) in `standby[]` of a single entry of `object` (`instagram` or `page`). The event is
/// `{"sender":{"id":user_id},"recipient":{"id":entry_id},"timestamp":timestamp_ms}` plus the members of
/// `event` (an object; anything else adds nothing), so it builds the Handover Protocol's webhooks,
/// e.g. `json!({"pass_thread_control": {"new_owner_app_id": "…", "previous_owner_app_id": "…",
/// "metadata": "…"}})`, as well as a message delivered on standby (`json!({"message": {"mid", "text"}})`).
pub fn handover(
    object: &str,
    entry_id: &str,
    user_id: &str,
    event: Value,
    timestamp_ms: i64,
    standby: bool,
) -> Vec<u8> {
    let mut raw = String::from(r#"{"sender":{"id":"#);
    push_string(&mut raw, user_id);
    raw.push_str(r#"},"recipient":{"id":"#);
    push_string(&mut raw, entry_id);
    raw.push_str(&format!(r#"}},"timestamp":{timestamp_ms}"#));
    if let Value::Object(members) = &event {
        for (key, value) in members {
            raw.push(',');
            push_string(&mut raw, key);
            raw.push(':');
            push_value(&mut raw, value);
        }
    }
    raw.push('}');
    let channel = if standby {
        Channel::Standby
    } else {
        Channel::Messaging
    };
    envelope(object, channel, &[entry(entry_id, timestamp_ms, Event::Raw(raw))])
}

fn entry(account_id: &str, time_ms: i64, event: Event) -> Entry {
    Entry {
        account_id: account_id.to_string(),
        time_ms,
        events: vec![event],
    }
}

fn single(account_id: &str, time_ms: i64, event: Event) -> Vec<u8> {
    batch(&[entry(account_id, time_ms, event)])
}

/// A body with several entries and events, as Meta batches them (up to 1000 updates per delivery).
pub fn batch(entries: &[Entry]) -> Vec<u8> {
    envelope("instagram", Channel::Messaging, entries)
}

/// A body of any `object` whose entries carry their events in `channel`: the general form of [`batch`],
/// for Messenger (`page`) and for standby deliveries.
pub fn envelope(object: &str, channel: Channel, entries: &[Entry]) -> Vec<u8> {
    let mut out = String::with_capacity(256 * entries.len().max(1));
    out.push_str(r#"{"object":"#);
    push_string(&mut out, object);
    out.push_str(r#","entry":["#);
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if object == "instagram" {
            out.push_str(&format!(r#"{{"time":{},"id":"#, entry.time_ms));
            push_string(&mut out, &entry.account_id);
        } else {
            out.push_str(r#"{"id":"#);
            push_string(&mut out, &entry.account_id);
            out.push_str(&format!(r#","time":{}"#, entry.time_ms));
        }
        out.push_str(&format!(r#","{}":["#, channel.key()));
        for (j, event) in entry.events.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            push_event(&mut out, &entry.account_id, event);
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out.into_bytes()
}

fn push_event(out: &mut String, account_id: &str, event: &Event) {
    let (sender, recipient, mid, text, timestamp_ms, is_echo, app_id) = match event {
        Event::Raw(raw) => return out.push_str(raw),
        Event::Text {
            user_id,
            mid,
            text,
            timestamp_ms,
        } => (user_id.as_str(), account_id, mid, text, timestamp_ms, false, None),
        Event::Echo {
            user_id,
            mid,
            text,
            timestamp_ms,
        } => (account_id, user_id.as_str(), mid, text, timestamp_ms, true, None),
        Event::ApiEcho {
            user_id,
            mid,
            text,
            timestamp_ms,
            app_id,
        } => (
            account_id,
            user_id.as_str(),
            mid,
            text,
            timestamp_ms,
            true,
            Some(app_id),
        ),
    };
    out.push_str(r#"{"sender":{"id":"#);
    push_string(out, sender);
    out.push_str(r#"},"recipient":{"id":"#);
    push_string(out, recipient);
    out.push_str(&format!(r#"}},"timestamp":{timestamp_ms},"message":{{"mid":"#));
    push_string(out, mid);
    out.push_str(r#","text":"#);
    push_string(out, text);
    if is_echo {
        out.push_str(r#","is_echo":true"#);
    }
    if let Some(app_id) = app_id {
        out.push_str(r#","app_id":"#);
        if !app_id.is_empty() && app_id.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(app_id);
        } else {
            push_string(out, app_id);
        }
    }
    out.push_str("}}");
}

/// Appends any JSON value with Meta's string escaping.
fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => push_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, key);
                out.push(':');
                push_value(out, item);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Appends `s` as a JSON string literal (with quotes), escaped the way Meta escapes.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(&escape(s));
    out.push('"');
}

/// Escapes `s` for a JSON string the way Meta does: `"`, `\` and `/` with a backslash, control characters
/// and every non-ASCII character as lowercase `\uXXXX` (astral characters as surrogate pairs).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_is_escaped_like_meta_does() {
        assert_eq!(escape("äöå"), "\\u00e4\\u00f6\\u00e5");
        assert_eq!(escape("❤️"), "\\u2764\\ufe0f");
        assert_eq!(escape("😀"), "\\ud83d\\ude00");
        assert_eq!(escape("a\"b\\c/d\n\u{1}"), "a\\\"b\\\\c\\/d\\n\\u0001");
    }

    #[test]
    fn a_text_message_has_the_real_captures_bytes() {
        let body = text_message(
            "17841400538867190",
            "1129842642640637",
            "mid1",
            "OI",
            1762022346848,
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"object":"instagram","entry":[{"time":1762022346848,"id":"17841400538867190","messaging":[{"sender":{"id":"1129842642640637"},"recipient":{"id":"17841400538867190"},"timestamp":1762022346848,"message":{"mid":"mid1","text":"OI"}}]}]}"#
        );
    }

    #[test]
    fn an_echo_swaps_sender_and_recipient_and_parses_back_to_the_same_text() {
        let body = echo("A", "U", "m", "olá ❤️ \"x\"", 5);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let event = &value["entry"][0]["messaging"][0];
        assert_eq!(event["sender"]["id"], "A");
        assert_eq!(event["recipient"]["id"], "U");
        assert_eq!(event["message"]["is_echo"], true);
        assert_eq!(event["message"]["text"], "olá ❤️ \"x\"");
        assert!(body.is_ascii());
    }

    #[test]
    fn a_batch_carries_every_entry_and_event_in_order() {
        let text = |mid: &str| Event::Text {
            user_id: "U".into(),
            mid: mid.into(),
            text: "t".into(),
            timestamp_ms: 1,
        };
        let body = batch(&[
            Entry {
                account_id: "A".into(),
                time_ms: 2,
                events: vec![text("1"), text("2")],
            },
            Entry {
                account_id: "B".into(),
                time_ms: 3,
                events: vec![Event::Raw(r#"{"read":{"mid":"3"}}"#.into())],
            },
        ]);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["entry"][0]["messaging"][1]["message"]["mid"], "2");
        assert_eq!(value["entry"][1]["id"], "B");
        assert_eq!(value["entry"][1]["messaging"][0]["read"]["mid"], "3");
    }

    #[test]
    fn an_api_echo_carries_the_app_id_as_a_number() {
        let body = api_echo("A", "U", "m", "hi", 5, "1234");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"object":"instagram","entry":[{"time":5,"id":"A","messaging":[{"sender":{"id":"A"},"recipient":{"id":"U"},"timestamp":5,"message":{"mid":"m","text":"hi","is_echo":true,"app_id":1234}}]}]}"#
        );
    }

    #[test]
    fn messenger_bodies_are_page_objects_with_the_page_as_entry_id() {
        let message = messenger_text_message("P", "S", "m1", "hi", 7);
        assert_eq!(
            String::from_utf8(message).unwrap(),
            r#"{"object":"page","entry":[{"id":"P","time":7,"messaging":[{"sender":{"id":"S"},"recipient":{"id":"P"},"timestamp":7,"message":{"mid":"m1","text":"hi"}}]}]}"#
        );
        let echo: serde_json::Value =
            serde_json::from_slice(&messenger_echo("P", "S", "m2", "yo", 8, "app")).unwrap();
        let event = &echo["entry"][0]["messaging"][0];
        assert_eq!(echo["object"], "page");
        assert_eq!(
            (&event["sender"]["id"], &event["recipient"]["id"]),
            (&"P".into(), &"S".into())
        );
        assert_eq!(event["message"]["is_echo"], true);
        assert_eq!(
            event["message"]["app_id"], "app",
            "a non-numeric app id stays a string"
        );
    }

    #[test]
    fn a_handover_event_goes_in_messaging_or_standby_with_metas_escaping() {
        let event = serde_json::json!({"pass_thread_control": {"new_owner_app_id": "2", "metadata": "olá"}});
        let body = handover("page", "P", "S", event.clone(), 9, false);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"object":"page","entry":[{"id":"P","time":9,"messaging":[{"sender":{"id":"S"},"recipient":{"id":"P"},"timestamp":9,"pass_thread_control":{"metadata":"ol\u00e1","new_owner_app_id":"2"}}]}]}"#
        );
        let standby: serde_json::Value =
            serde_json::from_slice(&handover("instagram", "A", "U", event, 9, true)).unwrap();
        assert!(standby["entry"][0].get("messaging").is_none());
        assert_eq!(
            standby["entry"][0]["standby"][0]["pass_thread_control"]["metadata"],
            "olá"
        );
    }
}
