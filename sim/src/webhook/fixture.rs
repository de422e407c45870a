//! Meta payload fixtures from `fixtures/meta/`, with their ids swapped for the ones a test uses.
//!
//! The fixtures are real captures and Meta's documented examples; replaying them with a test's account
//! and user ids exercises the service on shapes we did not invent. Substitution works on whole JSON
//! strings (`"IGID"` → `"1784…"`) so that one placeholder cannot corrupt another.

use super::payload::escape;
use std::path::PathBuf;

/// The placeholders (and captured ids) that stand for the business account in the fixtures.
pub const ACCOUNT_PLACEHOLDERS: &[&str] = &[
    "IGID",
    "<IGID>",
    "<YOUR_APP_USERS_INSTAGRAM_USER_ID>",
    "<PAGE_ID>",
    "17841400538867190",
    "17841421930215757",
    "682498302938465",
    "23245",
];

/// The placeholders (and captured ids) that stand for the Instagram user in the fixtures.
pub const USER_PLACEHOLDERS: &[&str] = &[
    "IGSID",
    "<IGSID>",
    "<INSTAGRAM_SCOPED_ID>",
    "<PSID>",
    "1129842642640637",
    "12334",
];

/// Why a fixture could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file is missing or unreadable; check the name or `OMNIDM_FIXTURES_DIR`.
    #[error("cannot read fixture {path}: {source}")]
    Read {
        /// The path tried.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where fixtures live: `OMNIDM_FIXTURES_DIR` if set (for a `sim` binary run away from the source tree),
/// else the workspace's `fixtures/meta`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("OMNIDM_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/meta")))
}

/// A fixture body being prepared for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    body: String,
}

impl Fixture {
    /// Loads `fixtures_dir()/name`, dropping the file's trailing newline (Meta's bodies have none).
    pub fn load(name: &str) -> Result<Self, FixtureError> {
        let path = fixtures_dir().join(name);
        let body = std::fs::read_to_string(&path).map_err(|source| FixtureError::Read { path, source })?;
        Ok(Self::from_string(
            body.strip_suffix('\n').unwrap_or(&body).to_string(),
        ))
    }

    /// Wraps a body that is already in memory.
    pub fn from_string(body: String) -> Self {
        Self { body }
    }

    /// Replaces every JSON string equal to `from` with `to` (escaped as Meta would).
    pub fn replace_string(mut self, from: &str, to: &str) -> Self {
        self.body = self
            .body
            .replace(&format!("\"{}\"", escape(from)), &format!("\"{}\"", escape(to)));
        self
    }

    /// Puts `account_id` wherever the fixture names the business account and `user_id` wherever it names
    /// the Instagram user ([`ACCOUNT_PLACEHOLDERS`], [`USER_PLACEHOLDERS`]). The dashboard test's
    /// `entry.id` of `"0"` is left alone: it is the point of that fixture.
    pub fn with_ids(self, account_id: &str, user_id: &str) -> Self {
        let with_account = ACCOUNT_PLACEHOLDERS
            .iter()
            .fold(self, |f, p| f.replace_string(p, account_id));
        USER_PLACEHOLDERS
            .iter()
            .fold(with_account, |f, p| f.replace_string(p, user_id))
    }

    /// The body as text.
    pub fn as_str(&self) -> &str {
        &self.body
    }

    /// The body, ready for [`super::WebhookClient::post`].
    pub fn into_bytes(self) -> Vec<u8> {
        self.body.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_text_capture_loads_without_its_newline_and_takes_new_ids() {
        let fixture = Fixture::load("ig_text_message_real_raw.json")
            .unwrap()
            .with_ids("111", "222");
        let value: serde_json::Value = serde_json::from_str(fixture.as_str()).unwrap();
        assert_eq!(value["entry"][0]["id"], "111");
        assert_eq!(value["entry"][0]["messaging"][0]["sender"]["id"], "222");
        assert_eq!(value["entry"][0]["messaging"][0]["recipient"]["id"], "111");
        assert!(!fixture.as_str().ends_with('\n'));
    }

    #[test]
    fn doc_placeholders_are_replaced_without_touching_each_other() {
        let fixture = Fixture::load("ig_story_mention_doc.json")
            .unwrap()
            .with_ids("A", "U");
        assert!(!fixture.as_str().contains("IGID") && !fixture.as_str().contains("IGSID"));
        let value: serde_json::Value = serde_json::from_str(fixture.as_str()).unwrap();
        assert_eq!(value["entry"][0]["messaging"][0]["sender"]["id"], "U");
    }

    #[test]
    fn a_missing_fixture_is_an_error_naming_the_path() {
        let error = Fixture::load("nope.json").unwrap_err();
        assert!(error.to_string().contains("nope.json"));
    }
}
