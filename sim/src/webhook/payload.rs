//! Meta-shaped webhook bodies, written byte by byte rather than through serde.
//!
//! The service verifies signatures over the exact bytes, so what we sign must look like what Meta sends:
//! keys in Meta's order (`time` before `id`, as in the real capture in META.md §3.2), no whitespace, and
//! non-ASCII escaped as lowercase `\uXXXX` (and `/` as `\/`), which serde_json does not do.

/// One messaging event inside an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A text DM from a user to the account.
    Text {
        /// The sender's IGSID.
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
    /// Any other event, as exact JSON bytes (a reaction, a read, something new).
    Raw(String),
}

/// One `entry[]` element: events for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The Instagram account id (`entry.id`).
    pub account_id: String,
    /// When Meta sent the notification, in ms (`entry.time`).
    pub time_ms: i64,
    /// The `messaging[]` events, in order.
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

fn single(account_id: &str, time_ms: i64, event: Event) -> Vec<u8> {
    batch(&[Entry {
        account_id: account_id.to_string(),
        time_ms,
        events: vec![event],
    }])
}

/// A body with several entries and events, as Meta batches them (up to 1000 updates per delivery).
pub fn batch(entries: &[Entry]) -> Vec<u8> {
    let mut out = String::with_capacity(256 * entries.len().max(1));
    out.push_str(r#"{"object":"instagram","entry":["#);
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(r#"{{"time":{},"id":"#, entry.time_ms));
        push_string(&mut out, &entry.account_id);
        out.push_str(r#","messaging":["#);
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
    let (sender, recipient, mid, text, timestamp_ms, is_echo) = match event {
        Event::Raw(raw) => return out.push_str(raw),
        Event::Text {
            user_id,
            mid,
            text,
            timestamp_ms,
        } => (user_id.as_str(), account_id, mid, text, timestamp_ms, false),
        Event::Echo {
            user_id,
            mid,
            text,
            timestamp_ms,
        } => (account_id, user_id.as_str(), mid, text, timestamp_ms, true),
    };
    out.push_str(r#"{"sender":{"id":"#);
    push_string(out, sender);
    out.push_str(r#"},"recipient":{"id":"#);
    push_string(out, recipient);
    out.push_str(&format!(r#"}},"timestamp":{timestamp_ms},"message":{{"mid":"#));
    push_string(out, mid);
    out.push_str(r#","text":"#);
    push_string(out, text);
    out.push_str(if is_echo { r#","is_echo":true}}"# } else { "}}" });
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
}
