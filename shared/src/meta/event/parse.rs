//! From a parsed event object to an [`Event`]: which key decides the kind, and how each non-message kind
//! reads its fields.
//!
//! An event object carries `sender`, `recipient`, `timestamp` and one payload key. When several payload
//! keys are present the first in [`classify_kind`]'s order wins: `message` first, because it is the one
//! that must never be missed.

use super::json::{self, Object};
use super::kind::{EventKind, HandoverAction, ReactionAction};
use super::{message, Event};
use serde_json::Value;

/// How many keys [`EventKind::Unknown`] keeps, and how many characters of each.
const MAX_UNKNOWN_KEYS: usize = 20;
const MAX_KEY_CHARS: usize = 64;

/// A messaging-shaped event (`messaging[]`, `standby[]`, or a messaging change's `value`).
pub(super) fn messaging_event(event: &Object) -> Event {
    Event {
        sender: json::party(event, "sender"),
        recipient: json::party(event, "recipient"),
        timestamp_ms: json::timestamp_ms(event.get("timestamp")),
        kind: classify_kind(event),
    }
}

/// True for a `{"field": "…", "value": …}` item.
pub(super) fn is_change_item(event: &Object) -> bool {
    event.get("field").is_some_and(Value::is_string) && event.contains_key("value")
}

/// A `changes[]` item. Messaging fields (`messages`, `messaging_*`, `message_*`, `standby`: dashboard tests
/// and Meta's newer examples use them) classify their `value` as a messaging event; other fields become
/// [`EventKind::ChangeField`]. An item without a `field` is read as a messaging event, in case it is one.
pub(super) fn change_item(item: &Object) -> Event {
    let Some(field) = item.get("field").and_then(Value::as_str) else {
        return messaging_event(item);
    };
    let value = json::object(item, "value");
    if !is_messaging_field(field) {
        let mut event = value.map_or_else(|| bare(EventKind::Unknown { keys: Vec::new() }), messaging_event);
        event.kind = EventKind::ChangeField {
            field: field.to_owned(),
        };
        return event;
    }
    match value {
        Some(value) => messaging_event(value),
        None => bare(EventKind::Malformed {
            event: "changes",
            problem: "value is not an object",
        }),
    }
}

fn is_messaging_field(field: &str) -> bool {
    field.starts_with("messag") || field == "standby"
}

fn bare(kind: EventKind) -> Event {
    Event {
        sender: None,
        recipient: None,
        timestamp_ms: None,
        kind,
    }
}

/// The kind of a messaging-shaped event. A payload key whose value is not an object is skipped.
fn classify_kind(event: &Object) -> EventKind {
    if let Some(m) = json::object(event, "message") {
        return message::classify(m);
    }
    if let Some(p) = json::object(event, "postback") {
        return EventKind::Postback {
            mid: json::text(p, "mid"),
            title: json::text(p, "title"),
            payload: json::text(p, "payload"),
        };
    }
    if let Some(r) = json::object(event, "reaction") {
        return reaction(r);
    }
    if let Some(e) = json::object(event, "message_edit") {
        return edit(e);
    }
    if let Some(r) = json::object(event, "read") {
        return EventKind::Read {
            mid: json::text(r, "mid"),
            watermark: json::timestamp_ms(r.get("watermark")),
        };
    }
    if let Some(d) = json::object(event, "delivery") {
        return delivery(d);
    }
    if let Some(r) = json::object(event, "referral") {
        return EventKind::Referral {
            r#ref: json::text(r, "ref"),
            source: json::text(r, "source"),
            kind: json::text(r, "type"),
        };
    }
    if let Some(o) = json::object(event, "optin") {
        return EventKind::Optin {
            r#ref: json::text(o, "ref"),
            kind: json::text(o, "type"),
        };
    }
    for (key, action) in HandoverAction::KEYS {
        if let Some(h) = json::object(event, key) {
            return handover(action, h);
        }
    }
    unknown(event)
}

/// `reaction`: an unknown or missing `action` is read from the content: with a reaction or emoji it is a
/// react, with neither an unreact (Meta omits both on unreact).
fn reaction(wire: &Object) -> EventKind {
    let Some(mid) = json::text(wire, "mid") else {
        return EventKind::Malformed {
            event: "reaction",
            problem: "reaction without mid",
        };
    };
    let reaction = json::text(wire, "reaction");
    let emoji = json::text(wire, "emoji");
    let action = match wire.get("action").and_then(Value::as_str) {
        Some(a) if a.eq_ignore_ascii_case("react") => ReactionAction::React,
        Some(a) if a.eq_ignore_ascii_case("unreact") => ReactionAction::Unreact,
        _ if reaction.is_none() && emoji.is_none() => ReactionAction::Unreact,
        _ => ReactionAction::React,
    };
    EventKind::Reaction {
        mid,
        action,
        reaction,
        emoji,
    }
}

fn edit(wire: &Object) -> EventKind {
    match json::text(wire, "mid") {
        Some(mid) => EventKind::Edit {
            mid,
            text: json::text(wire, "text"),
            num_edit: json::count(wire.get("num_edit")),
        },
        None => EventKind::Malformed {
            event: "message_edit",
            problem: "edit without mid",
        },
    }
}

/// `delivery`: `mids` that are not strings (or a `mids` that is not an array) are skipped.
fn delivery(wire: &Object) -> EventKind {
    let mids = match wire.get("mids") {
        Some(Value::Array(mids)) => mids.iter().filter_map(json::id).collect(),
        _ => Vec::new(),
    };
    EventKind::Delivery {
        mids,
        watermark: json::timestamp_ms(wire.get("watermark")),
    }
}

fn handover(action: HandoverAction, wire: &Object) -> EventKind {
    EventKind::Handover {
        action,
        new_owner_app_id: json::id_member(wire, "new_owner_app_id"),
        previous_owner_app_id: json::id_member(wire, "previous_owner_app_id"),
        requested_owner_app_id: json::id_member(wire, "requested_owner_app_id"),
        metadata: json::text(wire, "metadata"),
    }
}

/// The event's keys, sorted and bounded so a hostile payload cannot blow up a log line.
fn unknown(event: &Object) -> EventKind {
    let mut keys: Vec<String> = event
        .keys()
        .map(|k| k.chars().take(MAX_KEY_CHARS).collect())
        .collect();
    keys.sort();
    keys.truncate(MAX_UNKNOWN_KEYS);
    EventKind::Unknown { keys }
}
