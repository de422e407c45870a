//! The states a message, a conversation and a connected account can be in: one Rust enum each, stored
//! as text with a `CHECK` constraint listing exactly these values (migration
//! `20261205000006_conversation_state.sql`, and a test that compares the two).
//!
//! Text rather than PostgreSQL enum types on purpose: adding a value to a Postgres enum cannot run in a
//! transaction with the code that uses it, while widening a `CHECK` can. What each conversation state
//! means, and what moves a conversation between them, is `docs/conversation.md`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Declares a fieldless enum stored as snake_case text: `as_str`, `ALL`, `FromStr`, `Display`, serde,
/// and sqlx encoding as PostgreSQL `text` (and `text[]` for arrays), so a status is bound and read as
/// its type, never as a bare string.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order (the migration's `CHECK` lists the same).
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored (and wire) spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownState {
                        kind: stringify!($name),
                        value: other.to_owned(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl sqlx::Decode<'_, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'_>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(text.parse()?)
            }
        }
    };
}

/// A stored state the code does not know (a newer version wrote it, or the row was edited by hand).
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownState {
    /// Which enum.
    pub kind: &'static str,
    /// What was stored.
    pub value: String,
}

text_enum! {
    /// Where a message is in its life. Inbound messages use the first four, our outbound ones the rest
    /// (and `failed`); every change is an `UPDATE … WHERE status IN (<states it may come from>)`, so a
    /// racing writer changes nothing instead of undoing another's work.
    MessageStatus {
        /// Inbound, waiting for the reply pass.
        Pending => "pending",
        /// Inbound, answered by a reply (its `reply_id`).
        Answered => "answered",
        /// Inbound, recorded only: the reply policy, a person having the conversation, a deletion…
        /// (`status_reason` says which).
        Ignored => "ignored",
        /// Could not be answered or sent, for good (`status_reason` says why).
        Failed => "failed",
        /// Outbound, stored, not yet attempted.
        Queued => "queued",
        /// Outbound, a send was attempted: recognise its echo even before the Send API answers.
        Sending => "sending",
        /// Outbound, Meta accepted it.
        Sent => "sent",
        /// Outbound, Meta's echo confirmed it (or a human's message from the app, which only exists as
        /// an echo).
        Delivered => "delivered",
        /// Outbound, waiting for the account to be reconnected (token dead).
        Parked => "parked",
    }
}

text_enum! {
    /// Who speaks in a conversation. Only [`ConversationState::Bot`] lets the AI answer; every other
    /// state records the customer's messages and keeps quiet, each for its own reason and until its own
    /// way out (`docs/conversation.md`).
    ConversationState {
        /// The assistant answers.
        Bot => "bot",
        /// A person answered (in the Instagram app, or through the operator API) or an operator paused the
        /// bot: quiet until `ai_paused_until` (none: until resumed).
        Paused => "paused",
        /// Handed to a person (the AI called `handoff_to_human`): quiet until a person resumes it.
        Escalated => "escalated",
        /// Another app (the Page inbox, a helpdesk) owns the thread under Meta's Handover Protocol: we
        /// may not send; quiet until the thread is passed back.
        Elsewhere => "elsewhere",
    }
}

text_enum! {
    /// A connected account's health, shared by every worker: whether replies can be sent with its token.
    CredentialStatus {
        /// Working.
        Active => "active",
        /// Working, but the token expires within days and could not be refreshed: reconnect soon.
        Expiring => "expiring",
        /// Meta rejected the token: replies are parked until the business reconnects.
        ReauthRequired => "reauth_required",
        /// The business disconnected it: the token is deleted, the history kept.
        Disconnected => "disconnected",
    }
}

text_enum! {
    /// Who wrote a message.
    Author {
        /// The Instagram (or Messenger) user writing to the business.
        Customer => "customer",
        /// Our assistant (AI answers, and the fixed texts the reply policy sends in its name).
        Ai => "ai",
        /// A person of the business: from the Instagram app (seen as an echo) or through our operator API.
        Human => "human",
    }
}

text_enum! {
    /// Where a conversation happens. A Page-linked account talks on both: Instagram DMs arrive as
    /// webhook object `instagram`, the Page's Messenger DMs as object `page`.
    Channel {
        /// Instagram Direct.
        Instagram => "instagram",
        /// The linked Facebook Page's Messenger inbox.
        Messenger => "messenger",
    }
}

impl Channel {
    /// The channel of a webhook `object`: `page` is Messenger, anything else Instagram.
    pub fn of_object(object: &str) -> Self {
        if object == "page" {
            Channel::Messenger
        } else {
            Channel::Instagram
        }
    }
}

impl CredentialStatus {
    /// Whether replies may be produced and sent with this account's token.
    pub fn can_send(self) -> bool {
        matches!(self, CredentialStatus::Active | CredentialStatus::Expiring)
    }
}

impl MessageStatus {
    /// The direction a message in this status has (`failed` belongs to both: `None`).
    pub fn direction(self) -> Option<Direction> {
        match self {
            MessageStatus::Pending | MessageStatus::Answered | MessageStatus::Ignored => {
                Some(Direction::Inbound)
            }
            MessageStatus::Failed => None,
            _ => Some(Direction::Outbound),
        }
    }
}

text_enum! {
    /// Which way a message went.
    Direction {
        /// From the customer to the business.
        Inbound => "inbound",
        /// From the business (the AI or a person) to the customer.
        Outbound => "outbound",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_spelling() {
        for status in MessageStatus::ALL {
            assert_eq!(status.as_str().parse::<MessageStatus>().unwrap(), *status);
        }
        for state in ConversationState::ALL {
            assert_eq!(state.to_string().parse::<ConversationState>().unwrap(), *state);
        }
        assert_eq!(
            serde_json::to_string(&CredentialStatus::ReauthRequired).unwrap(),
            "\"reauth_required\""
        );
        assert!("paused_forever".parse::<ConversationState>().is_err());
    }

    #[test]
    fn statuses_belong_to_one_direction_except_failed() {
        assert_eq!(MessageStatus::Pending.direction(), Some(Direction::Inbound));
        assert_eq!(MessageStatus::Sending.direction(), Some(Direction::Outbound));
        assert_eq!(MessageStatus::Failed.direction(), None);
    }
}
