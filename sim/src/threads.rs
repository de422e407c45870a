//! Who controls each conversation thread (Meta's Handover Protocol) and which customers are Messenger
//! users rather than Instagram users.
//!
//! A thread is the conversation between one business account and one customer, keyed here by
//! `(Instagram account id, customer id)`. Meta gives every thread one owner app; the sim stores an owner
//! only while it is *another* app (the Page inbox, a test's helpdesk), so "absent" always means the primary
//! app, the service under test, and a reset or a `take` is a plain removal.

use crate::state::{lock, SimState};
use std::collections::{HashMap, HashSet};

/// The app id of the Page inbox (Meta Business Suite), the usual target when a bot hands a conversation to
/// people and the app that "takes" a thread when a person replies from the inbox.
pub const PAGE_INBOX_APP_ID: &str = "263902037430900";

/// Thread owners and Messenger recipients. Behind its own mutex in the sim's state: the Send API reads it
/// on every message, tests and handover calls write it rarely.
#[derive(Debug, Default)]
pub(crate) struct Threads {
    /// Threads another app owns, by `(ig account id, customer id)`; the value is that app's id.
    owners: HashMap<(String, String), String>,
    /// Customer ids that are Messenger PSIDs: their echoes are Messenger-shaped (`object: page`).
    messenger_users: HashSet<String>,
}

impl Threads {
    /// The app that owns the thread, or `None` for the primary app.
    pub(crate) fn owner(&self, ig_account_id: &str, recipient_id: &str) -> Option<String> {
        self.owners
            .get(&(ig_account_id.to_string(), recipient_id.to_string()))
            .cloned()
    }

    /// Makes `app_id` the owner; `None`, or the primary app's own id, gives the thread back to the primary
    /// app.
    pub(crate) fn set_owner(
        &mut self,
        ig_account_id: &str,
        recipient_id: &str,
        app_id: Option<String>,
        primary_app_id: &str,
    ) {
        let key = (ig_account_id.to_string(), recipient_id.to_string());
        match app_id.filter(|id| id != primary_app_id) {
            Some(app_id) => self.owners.insert(key, app_id),
            None => self.owners.remove(&key),
        };
    }

    /// Marks a customer id as a Messenger PSID.
    pub(crate) fn register_messenger_user(&mut self, psid: &str) {
        self.messenger_users.insert(psid.to_string());
    }

    /// Whether a customer id is a Messenger PSID.
    pub(crate) fn is_messenger_user(&self, recipient_id: &str) -> bool {
        self.messenger_users.contains(recipient_id)
    }
}

/// The Instagram account id a thread is kept under, from what a test names: a registered page's id means
/// that page's Instagram account (Messenger tests think in pages), anything else is taken as is.
pub(crate) fn thread_account(state: &SimState, id: &str) -> String {
    lock(&state.registry)
        .accounts()
        .into_iter()
        .find(|a| a.page_id == id)
        .map_or_else(|| id.to_string(), |a| a.ig_account_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_belongs_to_the_primary_app_until_passed_and_again_once_passed_back() {
        let mut threads = Threads::default();
        assert_eq!(threads.owner("A", "U"), None);
        threads.set_owner("A", "U", Some(PAGE_INBOX_APP_ID.into()), "1");
        assert_eq!(threads.owner("A", "U").as_deref(), Some(PAGE_INBOX_APP_ID));
        assert_eq!(threads.owner("B", "U"), None, "threads are per account");
        threads.set_owner("A", "U", Some("1".into()), "1");
        assert_eq!(threads.owner("A", "U"), None, "passing to the primary app clears");
        threads.set_owner("A", "U", Some("2".into()), "1");
        threads.set_owner("A", "U", None, "1");
        assert_eq!(threads.owner("A", "U"), None);
    }
}
