//! The one message type that travels from ingest to the worker.
//!
//! Versioned and externally tagged (`{"v1": {...}}`) so a worker can refuse (and dead-letter) a shape it
//! does not know instead of misreading it during a rolling upgrade. The Meta event is carried as the
//! exact bytes Meta sent (`RawValue`): nothing is lost or reinterpreted at the edge, and the worker's
//! parser, which is tolerant of Meta's many shapes, is the only interpretation.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use uuid::Uuid;

/// A queued unit of work: one messaging event out of a Meta webhook batch.
#[derive(Debug, Serialize, Deserialize)]
pub enum Job<'a> {
    /// A Meta event (version 1).
    #[serde(rename = "v1", borrow)]
    V1(JobV1<'a>),
    /// Work of our own, not from Meta: an account came back (reconnected) and what waited for it
    /// (parked replies, unanswered messages) should go out now rather than at the next sweep.
    #[serde(rename = "resume")]
    Resume(ResumeJob),
    /// Work of our own: a conversation has messages to send that no Meta event will bring to a worker
    /// (a person's reply through the operator API).
    #[serde(rename = "send")]
    Send(SendJob),
}

/// Runs a conversation's reply pass, which sends whatever it has queued. Idempotent like every pass: a
/// chunk already sent is not sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendJob {
    /// Unique per published job (logs, AMQP `message_id`).
    pub job_id: Uuid,
    /// The conversation.
    pub conversation_id: Uuid,
}

/// Resumes an account's parked work. Idempotent: running it twice sends nothing twice, because the
/// reply pass only sends what is still queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeJob {
    /// Unique per published job (logs, AMQP `message_id`).
    pub job_id: Uuid,
    /// The credential (connected account) whose conversations to resume.
    pub credential_id: Uuid,
}

/// Version 1 of [`Job`]. Borrowed fields keep ingest's hot path free of copies.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobV1<'a> {
    /// Unique per published job; the AMQP `message_id` too, so logs on both sides line up.
    pub job_id: Uuid,
    /// The envelope's `object`: `instagram`, or `page` for Messenger.
    #[serde(borrow)]
    pub object: Cow<'a, str>,
    /// `entry[].id`: the receiving account (Instagram professional account or Page). Routing key to the tenant.
    #[serde(borrow)]
    pub entry_id: Cow<'a, str>,
    /// Which array of the entry the event came from: the worker treats standby events differently.
    pub source: EventSource,
    /// When ingest received the webhook (ms since the Unix epoch).
    pub received_at_ms: i64,
    /// True when the event was recovered by reconciliation rather than delivered by webhook.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
    /// The event exactly as Meta sent it: an element of `messaging[]`/`standby[]`, or a `changes[]` item.
    #[serde(borrow)]
    pub event: &'a RawValue,
}

/// Where in a Meta entry an event was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// `entry[].messaging[]`: we own the thread.
    Messaging,
    /// `entry[].standby[]`: another app owns the thread (handover); we may record but not answer.
    Standby,
    /// `entry[].changes[]`: `{field, value}` items (dashboard tests, comments, …).
    Changes,
}

impl EventSource {
    /// Stable lower-case name, used in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Messaging => "messaging",
            EventSource::Standby => "standby",
            EventSource::Changes => "changes",
        }
    }
}

impl<'a> Job<'a> {
    /// Parses a job from a delivery body, borrowing from it.
    pub fn from_slice(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Serialises the job for publishing.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a job always serialises: only strings, numbers and valid raw JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_event_survives_a_round_trip_byte_for_byte() {
        let raw = r#"{"emoji":"\u2764\ufe0f", "n" : 1}"#;
        let event: &RawValue = serde_json::from_str(raw).unwrap();
        let job = Job::V1(JobV1 {
            job_id: Uuid::now_v7(),
            object: "instagram".into(),
            entry_id: "178".into(),
            source: EventSource::Messaging,
            received_at_ms: 1,
            recovered: false,
            event,
        });
        let bytes = job.to_vec();
        let Ok(Job::V1(back)) = Job::from_slice(&bytes) else {
            panic!("a v1 job reads back as v1");
        };
        assert_eq!(back.event.get(), raw);
        assert_eq!(back.entry_id, "178");
        assert!(!back.recovered);
    }

    #[test]
    fn a_resume_job_round_trips() {
        let job = Job::Resume(ResumeJob {
            job_id: Uuid::now_v7(),
            credential_id: Uuid::new_v4(),
        });
        let bytes = job.to_vec();
        assert!(bytes.starts_with(br#"{"resume":"#));
        match (Job::from_slice(&bytes).unwrap(), job) {
            (Job::Resume(a), Job::Resume(b)) => assert_eq!(a, b),
            _ => panic!("resume reads back as resume"),
        }
    }

    #[test]
    fn a_send_job_round_trips() {
        let job = Job::Send(SendJob {
            job_id: Uuid::now_v7(),
            conversation_id: Uuid::new_v4(),
        });
        let bytes = job.to_vec();
        assert!(bytes.starts_with(br#"{"send":"#));
        match (Job::from_slice(&bytes).unwrap(), job) {
            (Job::Send(a), Job::Send(b)) => assert_eq!(a, b),
            _ => panic!("send reads back as send"),
        }
    }

    #[test]
    fn an_unknown_version_is_an_error_not_a_misread() {
        assert!(Job::from_slice(br#"{"v2":{"job_id":"x"}}"#).is_err());
    }
}
