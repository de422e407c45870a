//! Classification of one Meta messaging event: from the raw JSON ingest queued to an [`Event`] the worker
//! can act on.
//!
//! Tolerant by design. Meta's payloads vary between Instagram and Messenger, real traffic and documented
//! examples, and dashboard tests (ids as strings or numbers, timestamps in seconds, milliseconds or
//! strings, placeholder values). Unknown fields are ignored, a field of the wrong type reads as absent,
//! and an event we do not recognise is [`EventKind::Unknown`]. Only input that is not a JSON object at all
//! is an error, because no later attempt could make sense of it.

mod attachment;
mod ids;
mod json;
mod kind;
mod message;
mod parse;
#[cfg(test)]
mod tests;

pub use attachment::{Attachment, AttachmentKind};
pub use ids::ExternalId;
pub use kind::{EventKind, HandoverAction, ReactionAction};
pub use message::{EchoMessage, InboundMessage, ReplyTo};

use crate::job::EventSource;
use chrono::{DateTime, Utc};

/// Why an event could not be classified at all. Permanent: retrying cannot help, so dead-letter the job.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The raw event is not JSON.
    #[error("event is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    /// The raw event is JSON, but not an object.
    #[error("event is {found}, not a JSON object")]
    NotAnObject {
        /// The JSON type found instead (`an array`, `a string`, …).
        found: &'static str,
    },
}

/// One classified Meta messaging event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Who sent it: the user for inbound events, the business account for echoes. `None` when Meta omits
    /// it (Instagram read receipts) or it is unreadable. A Messenger `user_ref` is used when there is no id.
    pub sender: Option<ExternalId>,
    /// Who received it: the business account for inbound events, the user for echoes.
    pub recipient: Option<ExternalId>,
    /// When the event happened, in ms since the Unix epoch, normalised from seconds or milliseconds,
    /// number or string; `None` for placeholders and absurd values. Order a thread's events by it.
    pub timestamp_ms: Option<i64>,
    /// What the event is.
    pub kind: EventKind,
}

/// The fake ids Meta's dashboard "Test" button sends (META.md §3.1).
const TEST_ENTRY_ID: &str = "0";
const TEST_SENDER_ID: &str = "12334";
const TEST_RECIPIENT_ID: &str = "23245";
const TEST_MID: &str = "random_mid";

impl Event {
    /// [`Event::timestamp_ms`] as a date, for storage and logs.
    pub fn sent_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.timestamp_ms?)
    }

    /// Whether this came from the App Dashboard's "Test" button rather than a real user: entry id `"0"`,
    /// sender `12334`, recipient `23245` or mid `random_mid` (any one suffices: real ids and mids are far
    /// longer, so none can collide). Such events are acknowledged and dropped, never answered.
    pub fn is_dashboard_test(&self, entry_id: &str) -> bool {
        let is = |id: &Option<ExternalId>, fake: &str| id.as_ref().is_some_and(|id| id.as_str() == fake);
        entry_id == TEST_ENTRY_ID
            || is(&self.sender, TEST_SENDER_ID)
            || is(&self.recipient, TEST_RECIPIENT_ID)
            || self.kind.mid() == Some(TEST_MID)
    }
}

/// Classifies one raw event: an element of `entry[].messaging[]` or `standby[]`, or a `changes[]` item
/// (`{"field", "value"}`), as `source` says.
///
/// Standby events classify exactly like messaging ones (the caller decides what standby means). The
/// source is a hint, not a trust boundary: a `changes[]` item without `field` is read as a messaging
/// event, and a messaging element that is unrecognised but shaped like a change item is read as one.
pub fn classify(source: EventSource, raw: &str) -> Result<Event, EventError> {
    let object = json::parse_object(raw)?;
    Ok(match source {
        EventSource::Changes => parse::change_item(&object),
        EventSource::Messaging | EventSource::Standby => {
            let event = parse::messaging_event(&object);
            if matches!(event.kind, EventKind::Unknown { .. }) && parse::is_change_item(&object) {
                parse::change_item(&object)
            } else {
                event
            }
        }
    })
}
