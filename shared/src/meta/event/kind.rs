//! [`EventKind`]: what one Meta messaging event is, with the fields the worker acts on.
//!
//! One variant per event Meta documents for Instagram and Messenger, plus `ChangeField`, `Malformed` and
//! `Unknown` so every input classifies to something that can be counted and logged.

use super::message::{EchoMessage, InboundMessage};

/// What an event is. Deliberately an open-ended classification: anything unrecognised becomes
/// [`EventKind::Unknown`] rather than an error, so a new Meta event never dead-letters jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A user's message to the business (text and/or attachments, inline or story reply, quick reply,
    /// ad or ig.me referral). The only kind the AI answers, with [`EventKind::Postback`].
    Message(InboundMessage),
    /// A tapped icebreaker, button or persistent-menu item; answer it like a message whose text is `title`.
    Postback {
        /// The postback's message id (v11.0+); absent on older payloads.
        mid: Option<String>,
        /// The button's label, what the user "said".
        title: Option<String>,
        /// The developer-defined payload; absent on standby deliveries.
        payload: Option<String>,
    },
    /// `message.is_echo`: a message the business account sent (by us through the API, or by a human from
    /// the app). Never answered; useful to notice a human taking over and to confirm our sends.
    Echo(EchoMessage),
    /// A user reacted to, or removed a reaction from, a message.
    Reaction {
        /// The message reacted to.
        mid: String,
        /// Whether the reaction was added or removed.
        action: ReactionAction,
        /// Meta's reaction name (`love`, `like`, `laugh`, …); absent on unreact.
        reaction: Option<String>,
        /// The emoji itself; absent on unreact.
        emoji: Option<String>,
    },
    /// A read receipt (`messaging_seen` on Instagram, `message_reads` on Messenger). Has no sender on IG.
    Read {
        /// The last message read (Instagram).
        mid: Option<String>,
        /// Everything sent at or before this time (ms) was read (Messenger).
        watermark: Option<i64>,
    },
    /// A delivery receipt (Messenger only).
    Delivery {
        /// The messages delivered; may be empty, in which case `watermark` says which.
        mids: Vec<String>,
        /// Everything sent at or before this time (ms) was delivered.
        watermark: Option<i64>,
    },
    /// The user edited a message they had sent.
    Edit {
        /// The edited message.
        mid: String,
        /// The new text.
        text: Option<String>,
        /// How many times it has been edited.
        num_edit: Option<i64>,
    },
    /// `message.is_deleted`: the user unsent a message; forget or redact it, never answer it.
    Deleted {
        /// The deleted message.
        mid: String,
    },
    /// `message.is_unsupported`: the user sent something the API cannot show (e.g. a GIF or sticker).
    Unsupported {
        /// The message Meta could not represent.
        mid: String,
    },
    /// A standalone referral: the user came back into an existing thread through an ig.me/m.me link or ad.
    Referral {
        /// The `ref` parameter of the link.
        r#ref: Option<String>,
        /// Where the user came from (`ADS`, `SHORTLINK`, the ig.me link, …).
        source: Option<String>,
        /// Meta's `type`, e.g. `OPEN_THREAD`.
        kind: Option<String>,
    },
    /// `messaging_optins`: the user opted in (e.g. to recurring notifications).
    Optin {
        /// The opt-in's `ref`, if any.
        r#ref: Option<String>,
        /// Meta's `type`, e.g. `notification_messages`.
        kind: Option<String>,
    },
    /// Handover protocol: thread control passed, taken or requested between apps.
    Handover {
        /// Which handover event this is.
        action: HandoverAction,
        /// The app that owns the thread now (pass/take).
        new_owner_app_id: Option<String>,
        /// The app that owned it before (pass/take).
        previous_owner_app_id: Option<String>,
        /// The app asking for control (request).
        requested_owner_app_id: Option<String>,
        /// Free text the other app attached.
        metadata: Option<String>,
    },
    /// A `changes[]` item whose field is not a messaging field (comments, mentions, …): counted, not handled.
    ChangeField {
        /// The `field` name, e.g. `comments`.
        field: String,
    },
    /// A recognised event missing what it cannot do without (e.g. a message without `mid`): there is
    /// nothing to deduplicate on or reply to, so it is logged and dropped.
    Malformed {
        /// The event's wire key (`message`, `reaction`, `message_edit`, `changes`).
        event: &'static str,
        /// What is wrong, as a fixed phrase suitable for a log field.
        problem: &'static str,
    },
    /// An event we do not recognise: its top-level keys (sorted, at most 20, each at most 64 characters)
    /// so logs and metrics show what Meta started sending.
    Unknown {
        /// The event object's keys, including `sender`/`recipient`/`timestamp` when present.
        keys: Vec<String>,
    },
}

/// Whether a [`EventKind::Reaction`] adds or removes a reaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionAction {
    /// `action: "react"`. Also used for an unknown or missing action when a reaction or emoji is given.
    React,
    /// `action: "unreact"`. Also used for an unknown or missing action with neither reaction nor emoji.
    Unreact,
}

/// Which handover event an [`EventKind::Handover`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoverAction {
    /// `pass_thread_control`: another app gave the thread to `new_owner_app_id`.
    Pass,
    /// `take_thread_control`: the primary app took the thread back.
    Take,
    /// `request_thread_control`: another app asked for the thread.
    Request,
}

impl HandoverAction {
    /// The wire key of each handover event, in the order they are looked for.
    pub(super) const KEYS: [(&'static str, HandoverAction); 3] = [
        ("pass_thread_control", HandoverAction::Pass),
        ("take_thread_control", HandoverAction::Take),
        ("request_thread_control", HandoverAction::Request),
    ];
}

impl EventKind {
    /// A stable snake_case label for metrics and logs (low cardinality: one per variant, and `unreact`
    /// apart from `reaction`).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Message(_) => "message",
            EventKind::Postback { .. } => "postback",
            EventKind::Echo(_) => "echo",
            EventKind::Reaction {
                action: ReactionAction::React,
                ..
            } => "reaction",
            EventKind::Reaction {
                action: ReactionAction::Unreact,
                ..
            } => "unreact",
            EventKind::Read { .. } => "read",
            EventKind::Delivery { .. } => "delivery",
            EventKind::Edit { .. } => "edit",
            EventKind::Deleted { .. } => "deleted",
            EventKind::Unsupported { .. } => "unsupported",
            EventKind::Referral { .. } => "referral",
            EventKind::Optin { .. } => "optin",
            EventKind::Handover { .. } => "handover",
            EventKind::ChangeField { .. } => "change_field",
            EventKind::Malformed { .. } => "malformed",
            EventKind::Unknown { .. } => "unknown",
        }
    }

    /// The message id the event is about, if any: with [`EventKind::name`], the deduplication key Meta
    /// recommends. For a delivery it is the first of `mids`.
    pub fn mid(&self) -> Option<&str> {
        match self {
            EventKind::Message(message) => Some(&message.mid),
            EventKind::Echo(echo) => Some(&echo.mid),
            EventKind::Reaction { mid, .. }
            | EventKind::Edit { mid, .. }
            | EventKind::Deleted { mid }
            | EventKind::Unsupported { mid } => Some(mid),
            EventKind::Postback { mid, .. } | EventKind::Read { mid, .. } => mid.as_deref(),
            EventKind::Delivery { mids, .. } => mids.first().map(String::as_str),
            EventKind::Referral { .. }
            | EventKind::Optin { .. }
            | EventKind::Handover { .. }
            | EventKind::ChangeField { .. }
            | EventKind::Malformed { .. }
            | EventKind::Unknown { .. } => None,
        }
    }
}
