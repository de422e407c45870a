//! [`Attachment`]: one item of a message's `attachments[]`, reduced to what the worker and the AI need.
//!
//! The set of attachment types is open (Meta adds and retires types, and Instagram and Messenger differ),
//! so unknown types are kept by name in [`AttachmentKind::Other`] instead of failing the message.

use super::json::{self, Object};
use serde_json::Value;

/// One attachment of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// What it is (`type` on the wire).
    pub kind: AttachmentKind,
    /// `payload.url` (or a top-level `url`, as in Messenger fallbacks): a CDN link that expires, absent for
    /// ephemeral media.
    pub url: Option<String>,
    /// A title, when Meta gives one (shares, fallbacks, templates).
    pub title: Option<String>,
    /// `payload.sticker_id` (Messenger): tells Meta's thumbs-up "like" stickers from other images.
    pub sticker_id: Option<String>,
}

/// Messenger's thumbs-up "like" sticker, in its three sizes: a customer tapping it means "ok", not a
/// question.
const LIKE_STICKER_IDS: [&str; 3] = ["369239263222822", "369239343222814", "369239383222810"];

impl Attachment {
    /// A heart or a thumbs-up: the customer closes a turn.
    pub fn is_like(&self) -> bool {
        self.kind == AttachmentKind::LikeHeart
            || self
                .sticker_id
                .as_deref()
                .is_some_and(|id| LIKE_STICKER_IDS.contains(&id))
    }

    /// Any sticker (Messenger's `sticker` type, or an image that carries a sticker id).
    pub fn is_sticker(&self) -> bool {
        self.kind == AttachmentKind::Sticker || self.sticker_id.is_some()
    }
}

/// An attachment's `type`. Open set: anything unknown is `Other(type)`, and a missing type is `Other("")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentKind {
    /// `image` (on Instagram also GIFs and stickers).
    Image,
    /// `video`.
    Video,
    /// `audio`: on Instagram, a voice message.
    Audio,
    /// `file`.
    File,
    /// `share`: a legacy Instagram post share.
    Share,
    /// `ig_post`: a shared Instagram post.
    IgPost,
    /// `reel`: a shared reel.
    Reel,
    /// `ig_reel`: a shared Instagram reel.
    IgReel,
    /// `story`: a shared story.
    Story,
    /// `ig_story`: a shared Instagram story.
    IgStory,
    /// `story_mention`: the user mentioned the business in their story.
    StoryMention,
    /// `ephemeral`: disappearing media, with no URL.
    Ephemeral,
    /// `media`: generic media.
    Media,
    /// `sticker` (Messenger).
    Sticker,
    /// `fallback`: a link Meta could not render otherwise (Messenger).
    Fallback,
    /// `template`: a structured message (seen on echoes of our own templates).
    Template,
    /// `like_heart`: Instagram's heart sticker.
    LikeHeart,
    /// Any other type, as Meta spelled it; empty when the type was missing.
    Other(String),
}

const NAMED: [(&str, AttachmentKind); 17] = [
    ("image", AttachmentKind::Image),
    ("video", AttachmentKind::Video),
    ("audio", AttachmentKind::Audio),
    ("file", AttachmentKind::File),
    ("share", AttachmentKind::Share),
    ("ig_post", AttachmentKind::IgPost),
    ("reel", AttachmentKind::Reel),
    ("ig_reel", AttachmentKind::IgReel),
    ("story", AttachmentKind::Story),
    ("ig_story", AttachmentKind::IgStory),
    ("story_mention", AttachmentKind::StoryMention),
    ("ephemeral", AttachmentKind::Ephemeral),
    ("media", AttachmentKind::Media),
    ("sticker", AttachmentKind::Sticker),
    ("fallback", AttachmentKind::Fallback),
    ("template", AttachmentKind::Template),
    ("like_heart", AttachmentKind::LikeHeart),
];

impl AttachmentKind {
    /// The kind for a wire `type`, matched without regard to ASCII case.
    pub fn from_wire(wire: &str) -> Self {
        NAMED
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wire))
            .map(|(_, kind)| kind.clone())
            .unwrap_or_else(|| AttachmentKind::Other(wire.to_owned()))
    }

    /// The wire `type` (lower case), for logs.
    pub fn as_str(&self) -> &str {
        match self {
            AttachmentKind::Other(wire) => wire,
            known => NAMED
                .iter()
                .find(|(_, kind)| kind == known)
                .map_or("", |(name, _)| name),
        }
    }

    /// A shared post, reel or story (not a story *mention*).
    pub fn is_share(&self) -> bool {
        matches!(
            self,
            AttachmentKind::Share
                | AttachmentKind::IgPost
                | AttachmentKind::Reel
                | AttachmentKind::IgReel
                | AttachmentKind::Story
                | AttachmentKind::IgStory
                | AttachmentKind::Fallback
        )
    }

    /// How the AI is told about an attachment it cannot see. Unknown types are not named, so nothing
    /// Meta-internal leaks into the conversation.
    pub fn description(&self) -> &'static str {
        match self {
            AttachmentKind::Image => "[image]",
            AttachmentKind::Video => "[video]",
            AttachmentKind::Audio => "[voice message]",
            AttachmentKind::File => "[file]",
            AttachmentKind::Share | AttachmentKind::IgPost => "[shared post]",
            AttachmentKind::Reel | AttachmentKind::IgReel => "[shared reel]",
            AttachmentKind::Story | AttachmentKind::IgStory => "[shared story]",
            AttachmentKind::StoryMention => "[story mention]",
            AttachmentKind::Ephemeral => "[disappearing media]",
            AttachmentKind::Media => "[media]",
            AttachmentKind::Sticker => "[sticker]",
            AttachmentKind::Fallback => "[shared link]",
            AttachmentKind::Template => "[template]",
            AttachmentKind::LikeHeart => "[heart]",
            AttachmentKind::Other(_) => "[attachment]",
        }
    }
}

/// The `attachments` member of a message: an array (elements that are not objects are skipped), or a
/// single object; anything else is no attachments.
pub(super) fn attachments(message: &Object) -> Vec<Attachment> {
    match message.get("attachments") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_object)
            .map(attachment)
            .collect(),
        Some(Value::Object(single)) => vec![attachment(single)],
        _ => Vec::new(),
    }
}

fn attachment(wire: &Object) -> Attachment {
    let payload = json::object(wire, "payload");
    let from_payload = |key| payload.and_then(|p| json::text(p, key));
    Attachment {
        kind: json::text(wire, "type").map_or(AttachmentKind::Other(String::new()), |t| {
            AttachmentKind::from_wire(&t)
        }),
        url: from_payload("url").or_else(|| json::text(wire, "url")),
        title: json::text(wire, "title").or_else(|| from_payload("title")),
        sticker_id: payload.and_then(|p| json::id_member(p, "sticker_id")),
    }
}
