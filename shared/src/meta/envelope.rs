//! The outer shape of a Meta webhook (`{"object", "entry": [{"id", "messaging"|"standby"|"changes"}]}`)
//! and how a batch splits into one job per event.
//!
//! Only the envelope is parsed here, borrowing from the verified body; each event stays raw. What an event
//! *means* is the worker's business (`meta::event`), so an event kind we have never seen is still queued.

use crate::job::EventSource;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Why a verified body could not be split. Such a body is kept for inspection, never retried.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON, or not the envelope shape (missing `object`/`entry`, wrong types, duplicate keys).
    #[error("not a Meta webhook envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    /// An entry id that is neither a string nor a number.
    #[error("entry id is neither a string nor a number")]
    BadEntryId,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    object: Cow<'a, str>,
    #[serde(borrow)]
    entry: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow, default)]
    messaging: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    standby: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    changes: Option<Vec<&'a RawValue>>,
}

/// One event out of a batch, still as Meta's raw JSON.
#[derive(Debug)]
pub struct SplitEvent<'a> {
    /// The entry's id (receiving account), normalised to a string whether Meta sent a string or a number.
    pub entry_id: Cow<'a, str>,
    /// Which array it came from.
    pub source: EventSource,
    /// The event's exact bytes.
    pub event: &'a RawValue,
}

/// A parsed batch: the envelope's `object` and every event in delivery order.
#[derive(Debug)]
pub struct Batch<'a> {
    /// `instagram` or `page` (anything else is passed on; the worker decides).
    pub object: Cow<'a, str>,
    /// One element per job to publish.
    pub events: Vec<SplitEvent<'a>>,
}

/// Splits a webhook body into its events: every element of `messaging[]` and `standby[]`, and every
/// `changes[]` item (the worker ignores fields other than `messages`, with a metric).
pub fn split(body: &[u8]) -> Result<Batch<'_>, EnvelopeError> {
    let envelope: Envelope<'_> = serde_json::from_slice(body)?;
    let mut events = Vec::new();
    for entry in envelope.entry {
        let entry_id = normalise_id(entry.id)?;
        let arrays = [
            (EventSource::Messaging, entry.messaging),
            (EventSource::Standby, entry.standby),
            (EventSource::Changes, entry.changes),
        ];
        for (source, items) in arrays {
            for event in items.into_iter().flatten() {
                events.push(SplitEvent {
                    entry_id: entry_id.clone(),
                    source,
                    event,
                });
            }
        }
    }
    Ok(Batch {
        object: envelope.object,
        events,
    })
}

/// Meta sends ids as strings, but documented examples also show bare numbers.
fn normalise_id(raw: &RawValue) -> Result<Cow<'_, str>, EnvelopeError> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') if !text.contains('\\') => Ok(Cow::Borrowed(&text[1..text.len() - 1])),
        Some(b'"') => Ok(Cow::Owned(serde_json::from_str::<String>(text)?)),
        Some(b'0'..=b'9') if text.bytes().all(|b| b.is_ascii_digit()) => Ok(Cow::Borrowed(text)),
        _ => Err(EnvelopeError::BadEntryId),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../fixtures/meta/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn a_real_text_message_is_one_event_with_its_exact_bytes() {
        let body = fixture("ig_text_message_real_raw.json");
        let batch = split(&body).unwrap();
        assert_eq!(batch.object, "instagram");
        assert_eq!(batch.events.len(), 1);
        let event = &batch.events[0];
        assert_eq!(event.entry_id, "17841400538867190");
        assert_eq!(event.source, EventSource::Messaging);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains(event.event.get()));
        assert!(event.event.get().starts_with(r#"{"sender""#));
    }

    #[test]
    fn standby_changes_and_multiple_entries_each_become_events() {
        let body = br#"{"object":"page","entry":[
            {"id":1,"time":1,"messaging":[{"a":1},{"a":2}]},
            {"id":"2","standby":[{"b":1}]},
            {"id":"3","changes":[{"field":"messages","value":{}}]},
            {"id":"4"}]}"#;
        let batch = split(body).unwrap();
        let summary: Vec<_> = batch
            .events
            .iter()
            .map(|e| (e.entry_id.as_ref(), e.source))
            .collect();
        assert_eq!(
            summary,
            [
                ("1", EventSource::Messaging),
                ("1", EventSource::Messaging),
                ("2", EventSource::Standby),
                ("3", EventSource::Changes)
            ]
        );
    }

    #[test]
    fn every_fixture_splits() {
        let dir = format!("{}/../fixtures/meta", env!("CARGO_MANIFEST_DIR"));
        for file in std::fs::read_dir(dir).unwrap() {
            let body = std::fs::read(file.unwrap().path()).unwrap();
            assert!(!split(&body).unwrap().events.is_empty());
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"object":"instagram"}"#,
            br#"{"object":"instagram","entry":{}}"#,
            br#"{"object":"instagram","entry":[{"messaging":[]}]}"#,
            br#"{"object":"instagram","entry":[{"id":{},"messaging":[]}]}"#,
            br#"{"object":"instagram","entry":[{"id":"1","messaging":{}}]}"#,
            br#"{"object":"instagram","object":"page","entry":[]}"#,
            b"{\"object\":\"\xff\",\"entry\":[]}",
        ] {
            assert!(split(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
