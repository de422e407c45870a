//! Meta's webhook payloads and Graph API: the envelope ingest splits, the events the worker classifies,
//! the Graph client and what its errors mean, and the login flows that connect an account.
//!
//! One place for Meta's formats, so the edge, the worker and the OAuth flow agree on what Meta sends.

pub mod envelope;
pub mod event;
pub mod graph;
pub mod graph_error;
pub mod handover;
pub mod login;

/// The Facebook Page inbox's app id in Meta's Handover Protocol: where a conversation handed to a person
/// goes, and whose thread-control events mean "a person in the Page inbox has it".
pub const PAGE_INBOX_APP_ID: &str = "263902037430900";

/// Meta's messaging windows, counted from the customer's last message.
pub mod window {
    use chrono::{DateTime, Duration, Utc};

    /// Hours in which anyone may answer (the standard messaging window).
    pub const STANDARD_HOURS: i64 = 24;
    /// Days in which a person (never a bot) may still answer with the `HUMAN_AGENT` tag.
    pub const HUMAN_AGENT_DAYS: i64 = 7;

    /// Which window a message sent `now` falls in, given the customer's last message.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Window {
        /// Within 24 hours: a normal response.
        Standard,
        /// 24 hours to 7 days: only a person, with the `HUMAN_AGENT` tag.
        HumanAgent,
        /// Later, or the customer never wrote: Meta refuses any message.
        Closed,
    }

    /// The window for a message sent `now`.
    pub fn at(last_inbound: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Window {
        match last_inbound {
            Some(at) if now - at < Duration::hours(STANDARD_HOURS) => Window::Standard,
            Some(at) if now - at < Duration::days(HUMAN_AGENT_DAYS) => Window::HumanAgent,
            _ => Window::Closed,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn windows_follow_metas_24_hour_and_7_day_rules() {
            let now = Utc::now();
            assert_eq!(at(Some(now - Duration::hours(23)), now), Window::Standard);
            assert_eq!(at(Some(now - Duration::hours(25)), now), Window::HumanAgent);
            assert_eq!(at(Some(now - Duration::days(6)), now), Window::HumanAgent);
            assert_eq!(at(Some(now - Duration::days(8)), now), Window::Closed);
            assert_eq!(at(None, now), Window::Closed);
        }
    }
}
