//! The reply policy: what the assistant does with each kind of thing a customer sends.
//!
//! Not everything a customer sends deserves an answer. A heart or a thumbs-up closes a turn; answering
//! it reads as a bot that does not listen and invites loops. Content Meta cannot show us must not be
//! guessed at by the AI. A story mention is a compliment, not a question. Each [`MessageKind`] gets a
//! [`Decision`]; [`ReplyPolicy`] holds a business's overrides of the defaults (stored as JSON on the
//! customer, set with `PATCH /api/customers/{id}`), and `docs/conversation.md` has the table.

use serde::{Deserialize, Serialize};

/// What a customer's message is, as far as answering it goes. Decided from Meta's payload by
/// [`crate::meta::event::InboundMessage::kind`]; stored as the message's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Words (possibly with a photo or file attached).
    Text,
    /// A tapped quick-reply button.
    QuickReply,
    /// A tapped icebreaker, button or menu item.
    Postback,
    /// A reply to the business's story.
    StoryReply,
    /// A shared post, reel or story (with or without a caption).
    Share,
    /// A photo, video, voice message or file without words.
    Media,
    /// A heart (`like_heart`) or one of Meta's thumbs-up "like" stickers.
    Like,
    /// Any other sticker.
    Sticker,
    /// Text that is only emoji ("👍", "❤️🙏").
    Emoji,
    /// The customer mentioned the business in their story.
    StoryMention,
    /// Meta could not show us the content (`is_unsupported`), or there was nothing readable.
    Unsupported,
    /// A reaction to a message (`message_reactions`): stored on the message, never answered.
    Reaction,
}

impl MessageKind {
    /// Every kind, in the order of the documentation's table.
    pub const ALL: [MessageKind; 12] = [
        MessageKind::Text,
        MessageKind::QuickReply,
        MessageKind::Postback,
        MessageKind::StoryReply,
        MessageKind::Share,
        MessageKind::Media,
        MessageKind::Like,
        MessageKind::Sticker,
        MessageKind::Emoji,
        MessageKind::StoryMention,
        MessageKind::Unsupported,
        MessageKind::Reaction,
    ];

    /// The stored spelling and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::QuickReply => "quick_reply",
            MessageKind::Postback => "postback",
            MessageKind::StoryReply => "story_reply",
            MessageKind::Share => "share",
            MessageKind::Media => "media",
            MessageKind::Like => "like",
            MessageKind::Sticker => "sticker",
            MessageKind::Emoji => "emoji",
            MessageKind::StoryMention => "story_mention",
            MessageKind::Unsupported => "unsupported",
            MessageKind::Reaction => "reaction",
        }
    }

    /// The kind a stored spelling names; messages stored before kinds existed read as `text`.
    pub fn from_stored(text: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .unwrap_or(MessageKind::Text)
    }
}

/// What to do with a message of some kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The AI answers it (merged with the rest of a burst).
    Ai,
    /// Store it, answer nothing.
    Record,
    /// Answer with this fixed text, never the AI (it would have to guess).
    Reply(String),
}

impl Decision {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Ai => "ai",
            Decision::Record => "record",
            Decision::Reply(_) => "fixed_reply",
        }
    }
}

/// What we answer to content we cannot open, unless the business wrote its own.
pub const DEFAULT_UNSUPPORTED_REPLY: &str =
    "Sorry, we couldn't open that message. Could you type what you'd like to say?";

/// What a customer reads when the bot hands the conversation to a person, unless the business wrote its
/// own (`handoffMessage`).
pub const DEFAULT_HANDOFF_MESSAGE: &str =
    "Thanks for your patience. I've passed this conversation to a member of our team, who will reply here.";

/// Longest fixed reply text a business may set (it is sent like any reply, in chunks of 1000 bytes).
pub const MAX_FIXED_REPLY_CHARS: usize = 2_000;

/// A business's overrides of the default decisions, one optional field per overridable kind
/// (reactions are always recorded). Absent fields take [`ReplyPolicy::default_for`]. The JSON form is the
/// API's and the stored one: `{"storyMention": {"reply": "Thanks for the mention!"}, "emoji": "ai"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplyPolicy {
    /// See [`MessageKind::Text`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Decision>,
    /// See [`MessageKind::QuickReply`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_reply: Option<Decision>,
    /// See [`MessageKind::Postback`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback: Option<Decision>,
    /// See [`MessageKind::StoryReply`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub story_reply: Option<Decision>,
    /// See [`MessageKind::Share`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<Decision>,
    /// See [`MessageKind::Media`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Decision>,
    /// See [`MessageKind::Like`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub like: Option<Decision>,
    /// See [`MessageKind::Sticker`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticker: Option<Decision>,
    /// See [`MessageKind::Emoji`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<Decision>,
    /// See [`MessageKind::StoryMention`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub story_mention: Option<Decision>,
    /// See [`MessageKind::Unsupported`]. `ai` is refused: the AI would guess at content it cannot see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<Decision>,
}

impl ReplyPolicy {
    /// The decision a business that changed nothing gets.
    pub fn default_for(kind: MessageKind) -> Decision {
        match kind {
            MessageKind::Text
            | MessageKind::QuickReply
            | MessageKind::Postback
            | MessageKind::StoryReply
            | MessageKind::Share
            | MessageKind::Media => Decision::Ai,
            MessageKind::Like
            | MessageKind::Sticker
            | MessageKind::Emoji
            | MessageKind::StoryMention
            | MessageKind::Reaction => Decision::Record,
            MessageKind::Unsupported => Decision::Reply(DEFAULT_UNSUPPORTED_REPLY.to_owned()),
        }
    }

    fn slot(&self, kind: MessageKind) -> Option<&Decision> {
        match kind {
            MessageKind::Text => self.text.as_ref(),
            MessageKind::QuickReply => self.quick_reply.as_ref(),
            MessageKind::Postback => self.postback.as_ref(),
            MessageKind::StoryReply => self.story_reply.as_ref(),
            MessageKind::Share => self.share.as_ref(),
            MessageKind::Media => self.media.as_ref(),
            MessageKind::Like => self.like.as_ref(),
            MessageKind::Sticker => self.sticker.as_ref(),
            MessageKind::Emoji => self.emoji.as_ref(),
            MessageKind::StoryMention => self.story_mention.as_ref(),
            MessageKind::Unsupported => self.unsupported.as_ref(),
            MessageKind::Reaction => None,
        }
    }

    /// This business's decision for a kind.
    pub fn decide(&self, kind: MessageKind) -> Decision {
        self.slot(kind)
            .cloned()
            .unwrap_or_else(|| Self::default_for(kind))
    }

    /// Every overridable kind with its decision: what `GET /api/customers/{id}` shows.
    pub fn effective(&self) -> Self {
        let pick = |kind| Some(self.decide(kind));
        Self {
            text: pick(MessageKind::Text),
            quick_reply: pick(MessageKind::QuickReply),
            postback: pick(MessageKind::Postback),
            story_reply: pick(MessageKind::StoryReply),
            share: pick(MessageKind::Share),
            media: pick(MessageKind::Media),
            like: pick(MessageKind::Like),
            sticker: pick(MessageKind::Sticker),
            emoji: pick(MessageKind::Emoji),
            story_mention: pick(MessageKind::StoryMention),
            unsupported: pick(MessageKind::Unsupported),
        }
    }

    /// Applies `changes` over this policy (a field set in `changes` wins).
    pub fn merged(mut self, changes: ReplyPolicy) -> Self {
        macro_rules! over {
            ($($field:ident),+) => { $(if changes.$field.is_some() { self.$field = changes.$field; })+ };
        }
        over!(
            text,
            quick_reply,
            postback,
            story_reply,
            share,
            media,
            like,
            sticker,
            emoji,
            story_mention,
            unsupported
        );
        self
    }

    /// Refuses what a business must not set: an empty or overlong fixed text, or the AI for content it
    /// cannot see. The message is for the API's 400 answer.
    pub fn validate(&self) -> Result<(), String> {
        if matches!(self.unsupported, Some(Decision::Ai)) {
            return Err("unsupported cannot be answered by the AI: it cannot see the content".into());
        }
        for kind in MessageKind::ALL {
            if let Some(Decision::Reply(text)) = self.slot(kind) {
                let chars = text.trim().chars().count();
                if chars == 0 || chars > MAX_FIXED_REPLY_CHARS {
                    return Err(format!(
                        "the reply for {} must be 1 to {MAX_FIXED_REPLY_CHARS} characters",
                        kind.as_str()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether `text` is nothing but emoji (and the joiners, skin tones and variation selectors they are
/// built from): "👍", "❤️", "🙏🏽🙏🏽". Such a message closes a turn like a reaction does. Digits, `#` and `*`
/// are not emoji on their own (they are only in keycap sequences), so "1" or "#" is text.
pub fn is_emoji_only(text: &str) -> bool {
    let mut any = false;
    for c in text.chars() {
        if c.is_whitespace() || is_emoji_modifier(c) {
            continue;
        }
        if !is_pictographic(c) {
            return false;
        }
        any = true;
    }
    any
}

fn is_emoji_modifier(c: char) -> bool {
    matches!(c as u32,
        0x200D            // zero-width joiner
        | 0xFE0E | 0xFE0F // variation selectors
        | 0x20E3          // combining keycap
        | 0x1F3FB..=0x1F3FF // skin tones
        | 0xE0020..=0xE007F // tag characters (subdivision flags)
    )
}

fn is_pictographic(c: char) -> bool {
    matches!(c as u32,
        0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x2122 | 0x2139
        | 0x2194..=0x21FF
        | 0x231A..=0x23FF
        | 0x24C2
        | 0x25A0..=0x27BF
        | 0x2934 | 0x2935
        | 0x2B05..=0x2BFF
        | 0x3030 | 0x303D | 0x3297 | 0x3299
        | 0x1F000..=0x1FAFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_recorded_and_questions_answered_by_default() {
        let policy = ReplyPolicy::default();
        assert_eq!(policy.decide(MessageKind::Text), Decision::Ai);
        assert_eq!(policy.decide(MessageKind::Postback), Decision::Ai);
        assert_eq!(policy.decide(MessageKind::Like), Decision::Record);
        assert_eq!(policy.decide(MessageKind::Emoji), Decision::Record);
        assert_eq!(policy.decide(MessageKind::StoryMention), Decision::Record);
        assert_eq!(
            policy.decide(MessageKind::Unsupported),
            Decision::Reply(DEFAULT_UNSUPPORTED_REPLY.into())
        );
    }

    #[test]
    fn overrides_read_from_the_api_shape_and_merge_over_earlier_ones() {
        let stored: ReplyPolicy = serde_json::from_str(r#"{"storyMention":"ai","emoji":"ai"}"#).unwrap();
        let change: ReplyPolicy =
            serde_json::from_str(r#"{"storyMention":{"reply":"Thanks for the mention!"}}"#).unwrap();
        let policy = stored.merged(change);
        assert_eq!(
            policy.decide(MessageKind::StoryMention),
            Decision::Reply("Thanks for the mention!".into())
        );
        assert_eq!(policy.decide(MessageKind::Emoji), Decision::Ai);
        assert_eq!(
            serde_json::to_value(&policy).unwrap(),
            serde_json::json!({"emoji": "ai", "storyMention": {"reply": "Thanks for the mention!"}})
        );
        assert!(serde_json::from_str::<ReplyPolicy>(r#"{"hearts":"ai"}"#).is_err());
        assert!(serde_json::from_str::<ReplyPolicy>(r#"{"text":"maybe"}"#).is_err());
    }

    #[test]
    fn the_ai_may_not_answer_content_it_cannot_see_and_fixed_texts_are_bounded() {
        let ai: ReplyPolicy = serde_json::from_str(r#"{"unsupported":"ai"}"#).unwrap();
        assert!(ai.validate().is_err());
        let blank: ReplyPolicy = serde_json::from_str(r#"{"like":{"reply":"  "}}"#).unwrap();
        assert!(blank.validate().is_err());
        assert!(ReplyPolicy::default().effective().validate().is_ok());
    }

    #[test]
    fn emoji_only_text_is_told_from_text_with_emoji() {
        for emoji in ["👍", "❤️", "🙏🏽🙏🏽", " 😂 😂 ", "👨‍👩‍👧", "🇫🇷", "♥"]
        {
            assert!(is_emoji_only(emoji), "{emoji:?}");
        }
        for text in ["ok 👍", "1", "#", "", "  ", "<3", "hi"] {
            assert!(!is_emoji_only(text), "{text:?}");
        }
    }
}
