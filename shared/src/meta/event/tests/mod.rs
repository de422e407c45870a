//! Tests for `meta::event`: every fixture Meta documented or delivered, then tolerance to odd and hostile
//! input, then what the AI and the metrics see.

use super::*;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

mod fixtures;
mod kinds;
mod reading;
mod tolerance;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    entry: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    id: Value,
    #[serde(borrow, default)]
    messaging: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    standby: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    changes: Vec<&'a RawValue>,
}

/// Every event of a fixture, classified from its exact bytes as ingest would queue them, with its entry
/// id and source.
fn classify_fixture(name: &str) -> Vec<(String, EventSource, Event)> {
    let path = format!("{}/../fixtures/meta/{name}", env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let envelope: Envelope<'_> = serde_json::from_str(&body).unwrap();
    let mut out = Vec::new();
    for entry in envelope.entry {
        let entry_id = match entry.id {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let arrays = [
            (EventSource::Messaging, entry.messaging),
            (EventSource::Standby, entry.standby),
            (EventSource::Changes, entry.changes),
        ];
        for (source, raws) in arrays {
            for raw in raws {
                let event = classify(source, raw.get()).unwrap_or_else(|e| panic!("{name}: {e}"));
                out.push((entry_id.clone(), source, event));
            }
        }
    }
    out
}

/// The only event of a fixture, with its entry id.
fn only_event(name: &str) -> (String, Event) {
    let mut events = classify_fixture(name);
    assert_eq!(events.len(), 1, "{name} should hold exactly one event");
    let (entry_id, _, event) = events.remove(0);
    (entry_id, event)
}

/// Classifies a literal messaging event.
fn messaging(raw: &str) -> Event {
    classify(EventSource::Messaging, raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
}

/// The inbound message of an event, failing the test if it is anything else.
fn inbound(event: Event) -> InboundMessage {
    match event.kind {
        EventKind::Message(message) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}
