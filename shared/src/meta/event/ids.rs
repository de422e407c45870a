//! [`ExternalId`]: an identifier Meta assigned (a user, an account, a Page, an app).
//!
//! Meta sends ids as JSON strings in real traffic but as bare numbers in some documented examples, so
//! both are accepted and kept as the decimal string: one spelling, whatever Meta chose that day.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// An id Meta assigned (IGSID, PSID, Instagram account id, Page id, app id, or a Messenger `user_ref`).
///
/// A newtype so a sender id cannot be passed where an account id or a message id is expected by accident,
/// and so the string-or-number decision is made once, here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExternalId(pub String);

impl ExternalId {
    /// The id as Meta spells it, for lookups and for the Send API's `recipient.id`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for ExternalId {
    fn from(id: String) -> Self {
        ExternalId(id)
    }
}

impl From<&str> for ExternalId {
    fn from(id: &str) -> Self {
        ExternalId(id.to_owned())
    }
}

/// Always written as a JSON string, so downstream readers never see the number form.
impl Serialize for ExternalId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Accepts a JSON string or an integer (kept as its decimal text); rejects anything else.
impl<'de> Deserialize<'de> for ExternalId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IdVisitor)
    }
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = ExternalId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id as a string or an integer")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ExternalId, E> {
        Ok(ExternalId(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<ExternalId, E> {
        Ok(ExternalId(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExternalId, E> {
        Ok(ExternalId(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ExternalId, E> {
        Ok(ExternalId(v.to_string()))
    }
}
