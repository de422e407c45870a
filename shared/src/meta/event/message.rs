//! The `message` event: a user's inbound message, or the echo of one the business sent, or a deleted or
//! unsupported one, decided by the flags in that order.
//!
//! Also what the AI reads of a message ([`InboundMessage::text_for_ai`]), because only this module knows
//! every shape a message can take.

use super::attachment::{self, Attachment, AttachmentKind};
use super::json::{self, Object};
use super::EventKind;
use crate::policy::{is_emoji_only, MessageKind};
use serde_json::Value;

/// A user's message to the business: the only input the AI answers.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// Meta's message id: the deduplication key, and what a reply or reaction refers to.
    pub mid: String,
    /// The text, when there is any (a quick reply's text is the button's label).
    pub text: Option<String>,
    /// Attachments, in Meta's order; empty for plain text.
    pub attachments: Vec<Attachment>,
    /// What the message replies to: an earlier message (inline reply) or the business's story.
    pub reply_to: Option<ReplyTo>,
    /// The payload of the quick-reply button the user tapped.
    pub quick_reply_payload: Option<String>,
    /// The ad, ig.me link or shop product that started the conversation, kept whole because its shape
    /// varies (`ref`, `ad_id`, `source`, `type`, `ads_context_data`, `product`).
    pub referral: Option<Value>,
    /// `is_self`: a test message the account sent to itself; not a real customer.
    pub is_self: bool,
}

/// What an inbound message replies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyTo {
    /// An inline reply to an earlier message in the thread.
    Message {
        /// The message replied to.
        mid: String,
    },
    /// A reply to the business's story.
    Story {
        /// The story's id.
        id: Option<String>,
        /// The story's CDN URL (expires).
        url: Option<String>,
    },
}

/// A message the business account sent (`is_echo`), by this service or by a human in the app.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoMessage {
    /// The sent message's id: matches the `message_id` the Send API returned, when it was ours.
    pub mid: String,
    /// Its text, if any.
    pub text: Option<String>,
    /// The app that sent it (string or number on the wire); tells our sends from a human's.
    pub app_id: Option<String>,
    /// Its attachments.
    pub attachments: Vec<Attachment>,
}

impl InboundMessage {
    /// What the message is for the reply policy, first match wins: a story mention; a heart or like
    /// sticker; a story reply; a quick reply; emoji-only text; text (a caption makes a share or a photo
    /// text); a share; another sticker; media; and nothing readable at all is unsupported.
    pub fn kind(&self) -> MessageKind {
        let any = |test: fn(&Attachment) -> bool| self.attachments.iter().any(test);
        let text = self.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
        if any(|a| a.kind == AttachmentKind::StoryMention) {
            return MessageKind::StoryMention;
        }
        if text.is_none() && any(Attachment::is_like) {
            return MessageKind::Like;
        }
        if matches!(self.reply_to, Some(ReplyTo::Story { .. })) {
            return MessageKind::StoryReply;
        }
        if self.quick_reply_payload.is_some() {
            return MessageKind::QuickReply;
        }
        match text {
            Some(text) if self.attachments.is_empty() && is_emoji_only(text) => MessageKind::Emoji,
            Some(_) => MessageKind::Text,
            None if any(|a| a.kind.is_share()) => MessageKind::Share,
            None if any(Attachment::is_sticker) => MessageKind::Sticker,
            None if !self.attachments.is_empty() => MessageKind::Media,
            None => MessageKind::Unsupported,
        }
    }

    /// What the AI should read: the text, followed by a bracketed description of each attachment
    /// (`[image]`, `[story mention]`, `[voice message]`, `[disappearing media]`, …), prefixed with
    /// `[reply to your story] ` for a story reply. Never empty: a message with nothing readable is
    /// `[empty message]`.
    pub fn text_for_ai(&self) -> String {
        let mut parts: Vec<&str> = Vec::with_capacity(self.attachments.len() + 2);
        if matches!(self.reply_to, Some(ReplyTo::Story { .. })) {
            parts.push("[reply to your story]");
        }
        if let Some(text) = self.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            parts.push(text);
        }
        parts.extend(self.attachments.iter().map(|a| a.kind.description()));
        if parts.is_empty() {
            return "[empty message]".to_owned();
        }
        parts.join(" ")
    }
}

/// Classifies a `message` object. Precedence: `is_echo`, then `is_deleted`, then `is_unsupported`, then a
/// regular message (which may have neither text nor attachments). Without a `mid` there is nothing to
/// deduplicate or reply to, so the event is [`EventKind::Malformed`].
pub(super) fn classify(message: &Object) -> EventKind {
    let Some(mid) = json::text(message, "mid") else {
        let problem = if json::flag(message, "is_echo") {
            "echo without mid"
        } else {
            "message without mid"
        };
        return EventKind::Malformed {
            event: "message",
            problem,
        };
    };
    if json::flag(message, "is_echo") {
        return EventKind::Echo(EchoMessage {
            mid,
            text: json::text(message, "text"),
            app_id: json::id_member(message, "app_id"),
            attachments: attachment::attachments(message),
        });
    }
    if json::flag(message, "is_deleted") {
        return EventKind::Deleted { mid };
    }
    if json::flag(message, "is_unsupported") {
        return EventKind::Unsupported { mid };
    }
    EventKind::Message(InboundMessage {
        mid,
        text: json::text(message, "text"),
        attachments: attachment::attachments(message),
        reply_to: json::object(message, "reply_to").and_then(reply_to),
        quick_reply_payload: json::object(message, "quick_reply").and_then(|q| json::text(q, "payload")),
        referral: message.get("referral").filter(|r| r.is_object()).cloned(),
        is_self: json::flag(message, "is_self"),
    })
}

/// `reply_to`: `{"story": {"id", "url"}}` wins over `{"mid"}`; neither is no reply.
fn reply_to(wire: &Object) -> Option<ReplyTo> {
    if let Some(story) = json::object(wire, "story") {
        return Some(ReplyTo::Story {
            id: json::text(story, "id"),
            url: json::text(story, "url"),
        });
    }
    json::text(wire, "mid").map(|mid| ReplyTo::Message { mid })
}
