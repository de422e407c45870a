//! [`SimHandle`]: the in-process control surface of a running sim.
//!
//! A test holds one (it is `Clone`, an `Arc` inside) to learn the URLs to configure the service with,
//! register accounts, inject faults, change behaviour and read what the service did. The `/_sim/` control
//! API ([`crate::control`]) exposes the same operations to other processes.

use crate::account::SimAccount;
use crate::fault::{Fault, FaultTarget};
use crate::records::{
    AiRequest, EchoDelivery, GraphRequest, RejectedSend, SenderAction, SentMessage, SimCounters,
    ThreadControlCall,
};
use crate::server::EchoMode;
use crate::state::{lock, SimState};
use crate::threads::thread_account;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A running sim. Cloning is cheap; the server stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Arc<SimState>,
    addr: SocketAddr,
    base_url: String,
    /// Set to `true` to stop the server; dropping it (with the last handle) stops it too.
    stop: watch::Sender<bool>,
}

impl SimHandle {
    pub(crate) fn new(state: Arc<SimState>, addr: SocketAddr, stop: watch::Sender<bool>) -> Self {
        let base_url = format!("http://{addr}");
        Self {
            inner: Arc::new(Inner {
                state,
                addr,
                base_url,
                stop,
            }),
        }
    }

    fn state(&self) -> &SimState {
        &self.inner.state
    }

    /// The address the sim listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:<port>`, the root of every route.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The value for `META_GRAPH_URL` (`{base}/graph/v25.0`; any version segment is served).
    pub fn graph_url(&self) -> String {
        format!("{}/graph/v25.0", self.base_url())
    }

    /// The value for `AI_BASE_URL`.
    pub fn ai_base_url(&self) -> String {
        format!("{}/ai/v1", self.base_url())
    }

    /// The value for `META_OAUTH_DIALOG_URL`.
    pub fn oauth_dialog_url(&self) -> String {
        format!("{}/dialog/oauth", self.base_url())
    }

    /// Stops serving: new connections are refused and idle ones closed at once, so callers see an
    /// outage; requests already being answered finish.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Registers (or replaces, by page id) an account so its tokens are accepted.
    pub fn add_account(&self, account: SimAccount) {
        lock(&self.state().registry).add_account(account);
    }

    /// Every registered account, ordered by page id.
    pub fn accounts(&self) -> Vec<SimAccount> {
        lock(&self.state().registry).accounts()
    }

    /// Makes a token fail with 190/460 from now on (a password change or removed role).
    pub fn revoke_token(&self, token: &str) {
        lock(&self.state().registry).revoke(token);
    }

    /// Records a DM a customer wrote to an account, as Meta stores it: visible through the
    /// Conversations API whether or not a webhook announces it (post the webhook yourself for that, or
    /// not, to play Meta dropping it).
    pub fn add_inbound_message(
        &self,
        ig_account_id: &str,
        user_id: &str,
        mid: &str,
        text: &str,
        timestamp_ms: i64,
    ) {
        lock(&self.state().registry)
            .inbox
            .entry(ig_account_id.to_string())
            .or_default()
            .push(crate::state::InboxMessage {
                user_id: user_id.to_string(),
                mid: mid.to_string(),
                text: text.to_string(),
                timestamp_ms,
            });
    }

    /// Which app controls the thread between an account and a customer (Handover Protocol): `None` is the
    /// primary app, the service under test. `ig_account_id` may also be a registered page's id, which
    /// means that page's Instagram account.
    pub fn thread_owner(&self, ig_account_id: &str, recipient_id: &str) -> Option<String> {
        let account = thread_account(self.state(), ig_account_id);
        lock(&self.state().threads).owner(&account, recipient_id)
    }

    /// Gives a thread to `app_id` (`None`, or the sim's own app id, gives it back to the primary app),
    /// as when a person takes the conversation in the Page inbox ([`crate::PAGE_INBOX_APP_ID`]). Posts
    /// no webhook: a test posts the handover event it wants (`webhook::payload::handover`).
    pub fn set_thread_owner(&self, ig_account_id: &str, recipient_id: &str, app_id: Option<String>) {
        let account = thread_account(self.state(), ig_account_id);
        lock(&self.state().threads).set_owner(&account, recipient_id, app_id, self.state().app_id());
    }

    /// Handover Protocol calls (pass, take, request), in order.
    pub fn thread_control_calls(&self) -> Vec<ThreadControlCall> {
        self.state().records.thread_control_calls()
    }

    /// Marks `psid` as a Messenger user: Meta tells Instagram and Messenger customers apart by their id,
    /// and the echoes of messages sent to this one are Messenger-shaped (`object: page`, the Page as
    /// `entry.id` and sender).
    pub fn register_messenger_user(&self, psid: &str) {
        lock(&self.state().threads).register_messenger_user(psid);
    }

    /// Plays Meta removing the app's webhook subscription of a page (after an hour of failed
    /// deliveries): `subscribed_apps` lists nothing until the service subscribes again.
    pub fn unsubscribe(&self, page_id: &str) {
        lock(&self.state().registry).unsubscribe(page_id);
    }

    /// Makes every later call with `token` fail as expired (190/463), as Meta does after its lifetime.
    pub fn expire_token(&self, token: &str) {
        lock(&self.state().registry).expire(token);
    }

    /// The Instagram Login tokens the sim issued for an Instagram account (short-, long-lived and
    /// refreshed), oldest first: a test learns the current one to expire it or compare after a refresh.
    pub fn instagram_tokens(&self, ig_account_id: &str) -> Vec<String> {
        lock(&self.state().registry).instagram_tokens(ig_account_id)
    }

    /// Instagram Login's authorize page (`META_INSTAGRAM_AUTHORIZE_URL`).
    pub fn instagram_authorize_url(&self) -> String {
        format!("{}/instagram/oauth/authorize", self.base_url())
    }

    /// Instagram Login's code exchange (`META_INSTAGRAM_TOKEN_URL`).
    pub fn instagram_token_url(&self) -> String {
        format!("{}/instagram/oauth/access_token", self.base_url())
    }

    /// The `graph.instagram.com` stand-in (`META_INSTAGRAM_GRAPH_URL`).
    pub fn instagram_graph_url(&self) -> String {
        format!("{}/ig-graph/v25.0", self.base_url())
    }

    /// The accounts an OAuth login grants from now on (they are registered too).
    pub fn set_oauth_accounts(&self, accounts: Vec<SimAccount>) {
        lock(&self.state().registry).set_oauth_accounts(accounts);
    }

    /// Whether the OAuth dialog refuses, as when the user clicks "Cancel".
    pub fn set_oauth_deny(&self, deny: bool) {
        lock(&self.state().registry).oauth_deny = deny;
    }

    /// The fields a page is subscribed to, or `None` when it is not subscribed.
    pub fn subscriptions(&self, page_id: &str) -> Option<Vec<String>> {
        lock(&self.state().registry).subscriptions(page_id)
    }

    /// Sets when echoes are posted.
    pub fn set_echo(&self, mode: EchoMode) {
        lock(&self.state().settings).echo = mode;
    }

    /// Sets where echoes are posted and the app secret that signs them.
    pub fn set_echo_target(&self, webhook_url: impl Into<String>, app_secret: impl Into<String>) {
        let mut settings = lock(&self.state().settings);
        settings.echo_url = Some(webhook_url.into());
        settings.echo_secret = Some(app_secret.into());
    }

    /// A fixed AI answer (`Some`), or back to the quoting answer (`None`).
    pub fn set_ai_reply(&self, reply: Option<String>) {
        lock(&self.state().settings).ai_reply = reply;
    }

    /// Forces a handoff (`Some(reason)`): every later AI request that offers `handoff_to_human` is answered
    /// with a call to it, with that reason, whatever the customer wrote. `None` goes back to handing off
    /// only when an unanswered user message asks for a person.
    pub fn set_ai_handoff(&self, reason: Option<String>) {
        lock(&self.state().settings).ai_handoff = reason;
    }

    /// How long each chat completion takes from now on.
    pub fn set_ai_latency(&self, latency: Duration) {
        lock(&self.state().settings).ai_latency = latency;
    }

    /// The next `count` calls to `target` get `fault`, after any faults already queued (FIFO).
    pub fn push_faults(&self, target: FaultTarget, fault: Fault, count: u32) {
        lock(&self.state().faults).push(target, fault, count);
    }

    /// Every call to `target` gets `fault` (once the queue is empty) until cleared with `None`.
    pub fn set_fault(&self, target: FaultTarget, fault: Option<Fault>) {
        lock(&self.state().faults).set(target, fault);
    }

    /// Removes every queued and standing fault.
    pub fn clear_faults(&self) {
        lock(&self.state().faults).clear();
    }

    /// Back to the state right after start: accounts and settings from the options, no faults, no
    /// records, no subscriptions, every thread owned by the primary app, no Messenger users.
    pub fn reset(&self) {
        self.state().reset();
    }

    /// Messages the Send API accepted, in order.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        self.state().records.sent_messages()
    }

    /// Send API calls refused for their content, in order.
    pub fn rejected_sends(&self) -> Vec<RejectedSend> {
        self.state().records.rejected_sends()
    }

    /// Every Graph API call, in order of arrival.
    pub fn graph_requests(&self) -> Vec<GraphRequest> {
        self.state().records.graph_requests()
    }

    /// Sender actions (`typing_on`, `typing_off`, `mark_seen`) the Send API accepted, in order. They are
    /// never among [`Self::sent_messages`] and never echoed.
    pub fn sender_actions(&self) -> Vec<SenderAction> {
        self.state().records.sender_actions()
    }

    /// Every chat-completions call, in order of arrival.
    pub fn ai_requests(&self) -> Vec<AiRequest> {
        self.state().records.ai_requests()
    }

    /// Every echo webhook posted and how the endpoint answered.
    pub fn echo_deliveries(&self) -> Vec<EchoDelivery> {
        self.state().records.echo_deliveries()
    }

    /// Counters, kept even when recording is off.
    pub fn counters(&self) -> SimCounters {
        self.state().records.counters()
    }

    /// Waits until at least `count` messages were sent, polling every 10 ms for at most `timeout`.
    /// Returns the messages, or `None` on timeout, so a test never sleeps blindly.
    pub async fn wait_for_sent(&self, count: usize, timeout: Duration) -> Option<Vec<SentMessage>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.counters().sent >= count as u64 {
                return Some(self.sent_messages());
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
