//! Meta's Handover Protocol calls (`POST /me/pass_thread_control`, `/me/take_thread_control`): which app
//! owns a conversation's thread. One place for their shape, for the worker (escalation, requests from
//! other apps) and ingest (resume).

use super::graph::{GraphApi, GraphCallError, Host};
use secrecy::SecretString;
use serde::Deserialize;

/// A Handover Protocol call (`POST /me/{action}_thread_control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadControl<'a> {
    /// Give the thread to another app (the Page inbox's id, or whoever asked).
    Pass {
        /// The app that gets it.
        target_app_id: &'a str,
    },
    /// Take the thread back (we are the primary receiver).
    Take,
}

impl ThreadControl<'_> {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            ThreadControl::Pass { .. } => "pass",
            ThreadControl::Take => "take",
        }
    }
}

#[derive(Deserialize)]
struct Success {
    #[serde(default)]
    success: bool,
}

impl GraphApi {
    /// Passes or takes the thread with `recipient` (page token, Facebook host: only Page-linked accounts
    /// take part in the Handover Protocol).
    #[tracing::instrument(name = "thread_control", skip_all, fields(action = control.label()))]
    pub async fn thread_control(
        &self,
        token: &SecretString,
        recipient: &str,
        control: ThreadControl<'_>,
        metadata: &str,
    ) -> Result<bool, GraphCallError> {
        let (path, body) = match control {
            ThreadControl::Pass { target_app_id } => (
                "me/pass_thread_control",
                serde_json::json!({"recipient": {"id": recipient}, "target_app_id": target_app_id, "metadata": metadata}),
            ),
            ThreadControl::Take => (
                "me/take_thread_control",
                serde_json::json!({"recipient": {"id": recipient}, "metadata": metadata}),
            ),
        };
        self.post::<Success>(Host::Facebook, path, &[], Some(token), Some(&body))
            .await
            .map(|answer| answer.success)
    }
}
