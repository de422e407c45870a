//! Meta's Send API (`POST /me/messages` with the account's token), on the Graph host that issued the
//! token, with errors classified by Meta's codes. HTTP, `appsecret_proof` and error classification are
//! `omnidm_shared::meta::graph`'s; this module is only what a send means.

use omnidm_shared::meta::graph::{GraphApi, GraphCallError, Host};
use omnidm_shared::meta::graph_error::ErrorClass;
use secrecy::SecretString;
use serde::Deserialize;

/// A failed send, classified (`class` says whether to retry, pause, park or give up).
pub type SendError = GraphCallError;

/// The Send API client.
#[derive(Clone)]
pub struct GraphClient {
    api: GraphApi,
}

#[derive(Deserialize)]
struct Sent {
    message_id: String,
}

/// Under which of Meta's rules a message goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Messaging {
    /// A response inside the 24-hour window: the only way the bot ever sends.
    Response,
    /// A person's answer 24 hours to 7 days after the customer's last message (`HUMAN_AGENT` tag).
    HumanAgent,
}

impl GraphClient {
    /// Wraps the shared Graph client.
    pub fn new(api: GraphApi) -> Self {
        Self { api }
    }

    /// The underlying Graph client (token lifecycle, reconciliation).
    pub fn api(&self) -> &GraphApi {
        &self.api
    }

    /// Sends one text message as the account `token` acts for; returns Meta's message id.
    #[tracing::instrument(name = "send", skip_all, fields(messaging = ?messaging))]
    pub async fn send_text(
        &self,
        host: Host,
        token: &SecretString,
        recipient: &str,
        text: &str,
        messaging: Messaging,
    ) -> Result<String, SendError> {
        let mut body = serde_json::json!({
            "recipient": {"id": recipient},
            "messaging_type": "RESPONSE",
            "message": {"text": text},
        });
        if messaging == Messaging::HumanAgent {
            // Both fields: Messenger wants `messaging_type`, Meta's Instagram examples only show `tag`.
            body["messaging_type"] = "MESSAGE_TAG".into();
            body["tag"] = "HUMAN_AGENT".into();
        }
        // A 2xx without a message id means Meta may or may not have sent it: the echo decides.
        self.api
            .post::<Sent>(host, "me/messages", &[], Some(token), Some(&body))
            .await
            .map(|sent| sent.message_id)
            .map_err(|mut error| {
                if error.is_unreadable_success() {
                    error.class = ErrorClass::SentButError;
                }
                error
            })
    }
}
