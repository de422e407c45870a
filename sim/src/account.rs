//! The business accounts the sim knows: a Facebook Page, the Instagram professional account linked to it,
//! and the tokens that grant access to them.
//!
//! Meta's Facebook-Login flow hands the service a *user* token (which lists pages) and, per page, a *page*
//! token (which sends messages). The sim keeps both so that every token the service can hold resolves to
//! exactly one registry entry, and a test can tell which account a call acted for.

use serde::{Deserialize, Serialize};

/// One Page + Instagram account pair, with the tokens Meta would issue for it.
///
/// Ids and tokens are plain strings because they cross the wire verbatim; the sim never interprets them
/// beyond looking them up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimAccount {
    /// The Facebook Page id (what `/me/accounts` lists and `subscribed_apps` is called on).
    pub page_id: String,
    /// The Instagram professional account id: webhook `entry.id`, echo `sender.id`.
    pub ig_account_id: String,
    /// The Instagram handle, returned as `instagram_business_account.username`.
    pub username: String,
    /// The page access token the Send API accepts for this account.
    pub page_token: String,
    /// A user access token whose `/me/accounts` lists this page (tests may skip the OAuth dance with it).
    pub user_token: String,
    /// Whether the page has an Instagram account linked. `false` reproduces a customer who connected a
    /// Page without Instagram: `/me/accounts` and the page node then omit `instagram_business_account`.
    #[serde(default = "linked_by_default")]
    pub instagram_linked: bool,
}

fn linked_by_default() -> bool {
    true
}

impl SimAccount {
    /// An account with the given ids and tokens, linked to Instagram.
    pub fn new(
        page_id: impl Into<String>,
        ig_account_id: impl Into<String>,
        username: impl Into<String>,
        page_token: impl Into<String>,
        user_token: impl Into<String>,
    ) -> Self {
        Self {
            page_id: page_id.into(),
            ig_account_id: ig_account_id.into(),
            username: username.into(),
            page_token: page_token.into(),
            user_token: user_token.into(),
            instagram_linked: true,
        }
    }

    /// The `n`th generated account. Deterministic, so a demo or a test can predict ids and tokens, and
    /// shaped like Meta's (15-digit page id, 17-digit `1784…` Instagram id, `EAA…` tokens).
    pub fn generated(n: u32) -> Self {
        Self::new(
            format!("1000000000{n:05}"),
            format!("178414000{n:08}"),
            format!("sim_shop_{n}"),
            format!("EAAsimPAGE{n}"),
            format!("EAAsimUSER{n}"),
        )
    }

    /// The same account without a linked Instagram account.
    pub fn without_instagram(mut self) -> Self {
        self.instagram_linked = false;
        self
    }

    /// The Page's display name, derived from the handle so it needs no field of its own.
    pub fn page_name(&self) -> String {
        format!("{} Page", self.username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_accounts_are_deterministic_and_meta_shaped() {
        let a = SimAccount::generated(7);
        assert_eq!(a, SimAccount::generated(7));
        assert_eq!(a.page_id.len(), 15);
        assert_eq!(a.ig_account_id.len(), 17);
        assert!(a.ig_account_id.starts_with("1784"));
        assert_ne!(a.page_token, SimAccount::generated(8).page_token);
    }

    #[test]
    fn an_account_without_the_flag_in_json_is_linked() {
        let a: SimAccount = serde_json::from_str(
            r#"{"page_id":"1","ig_account_id":"2","username":"u","page_token":"p","user_token":"t"}"#,
        )
        .unwrap();
        assert!(a.instagram_linked);
    }
}
