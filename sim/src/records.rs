//! What the sim remembers about the calls it served, so tests can assert on the service's behaviour
//! ("exactly one reply was sent", "no Graph call during the pause", "the AI saw both messages").
//!
//! Counters are always kept (atomics, no allocation). Full records are kept only while recording is on
//! ([`crate::SimOptions::record`]): a benchmark at thousands of requests per second must not grow memory
//! without bound.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A message the Send API accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    /// The page whose token sent it.
    pub page_id: String,
    /// The Instagram account it was sent from (the echo's `sender.id`).
    pub ig_account_id: String,
    /// The recipient's IGSID.
    pub recipient_id: String,
    /// The text (empty for attachment-only messages).
    pub text: String,
    /// `messaging_type`, if the service sent one (`RESPONSE`, `MESSAGE_TAG`).
    pub messaging_type: Option<String>,
    /// `tag`, if any (`HUMAN_AGENT`).
    pub tag: Option<String>,
    /// The id the sim returned and put in the echo's `mid`.
    pub message_id: String,
    /// When the sim accepted it.
    pub received_at: DateTime<Utc>,
}

/// A Send API call refused for its content (e.g. text over 1000 bytes): the service should have split it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedSend {
    /// The recipient the call named, if any.
    pub recipient_id: Option<String>,
    /// Length of the text in UTF-8 bytes.
    pub text_bytes: usize,
    /// The Meta error code returned.
    pub code: i64,
    /// The Meta error subcode returned.
    pub subcode: Option<i64>,
    /// When it was refused.
    pub at: DateTime<Utc>,
}

/// Any call under `/graph/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphRequest {
    /// HTTP method.
    pub method: String,
    /// The version segment the caller used (`v25.0`).
    pub version: String,
    /// The path after the version, e.g. `/me/messages`.
    pub path: String,
    /// Query (and form-body) parameters, without `access_token`: tokens are not kept in records.
    pub query: BTreeMap<String, String>,
    /// Whether a token came with it (query or `Authorization: Bearer`).
    pub has_token: bool,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

/// One chat message as the AI received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text (array-of-parts content is flattened to its text parts).
    pub content: String,
}

/// A chat-completions call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiRequest {
    /// The model name passed through.
    pub model: String,
    /// The conversation sent.
    pub messages: Vec<ChatMessage>,
    /// The names of the function tools the request offered (`tools[].function.name`), in order.
    #[serde(default)]
    pub tools: Vec<String>,
    /// The request's `max_tokens`, if it set one (a bound on what one answer may cost).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Whether an `Authorization` header was present (the key itself is not kept).
    pub has_authorization: bool,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

/// A Handover Protocol call (`pass_thread_control`, `take_thread_control`, `request_thread_control`),
/// so a test can assert that the service handed a conversation to a person, or took it back, exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadControlCall {
    /// `pass`, `take` or `request`.
    pub action: String,
    /// The page whose token made the call.
    pub page_id: String,
    /// The Instagram account of that page: the thread is the one between it and the recipient.
    pub ig_account_id: String,
    /// The customer (IGSID or PSID) whose thread it is.
    pub recipient_id: String,
    /// The app the thread was passed to (`pass` only).
    pub target_app_id: Option<String>,
    /// The caller's `metadata`, if any.
    pub metadata: Option<String>,
    /// When the sim accepted it.
    pub at: DateTime<Utc>,
}

/// A sender action (`typing_on`, `typing_off`, `mark_seen`) the Send API accepted. Kept apart from
/// [`SentMessage`] because it is not a message: it is never counted as a reply and never echoed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderAction {
    /// The page whose token sent it.
    pub page_id: String,
    /// The Instagram account of that page.
    pub ig_account_id: String,
    /// The customer it was shown to.
    pub recipient_id: String,
    /// `typing_on`, `typing_off` or `mark_seen`.
    pub action: String,
    /// When the sim accepted it.
    pub at: DateTime<Utc>,
}

/// The outcome of one echo webhook the sim posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoDelivery {
    /// The echoed message's id.
    pub message_id: String,
    /// The webhook endpoint's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed, if it did (no target configured, connection refused, ...).
    pub error: Option<String>,
}

/// Counts that are kept even when recording is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCounters {
    /// Calls under `/graph/` (Send API included).
    pub graph_requests: u64,
    /// Messages the Send API accepted.
    pub sent: u64,
    /// Send API calls refused for their content.
    pub rejected_sends: u64,
    /// Chat-completions calls.
    pub ai_requests: u64,
    /// Echo webhooks posted (answered or not).
    pub echoes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    graph_requests: AtomicU64,
    sent: AtomicU64,
    rejected_sends: AtomicU64,
    ai_requests: AtomicU64,
    echoes: AtomicU64,
}

#[derive(Debug, Default)]
struct Lists {
    sent: Vec<SentMessage>,
    rejected: Vec<RejectedSend>,
    graph: Vec<GraphRequest>,
    ai: Vec<AiRequest>,
    echoes: Vec<EchoDelivery>,
    thread_control: Vec<ThreadControlCall>,
    sender_actions: Vec<SenderAction>,
}

/// The record store. One mutex over all lists: pushes are short and a test reads rarely, so a finer split
/// would buy nothing.
#[derive(Debug)]
pub(crate) struct Records {
    record: bool,
    counters: Counters,
    lists: Mutex<Lists>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Records {
    pub(crate) fn new(record: bool) -> Self {
        Self {
            record,
            counters: Counters::default(),
            lists: Mutex::default(),
        }
    }

    fn with_lists(&self, f: impl FnOnce(&mut Lists)) {
        if self.record {
            f(&mut crate::state::lock(&self.lists));
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Lists) -> T) -> T {
        f(&crate::state::lock(&self.lists))
    }

    pub(crate) fn sent(&self, m: SentMessage) {
        bump(&self.counters.sent);
        self.with_lists(|l| l.sent.push(m));
    }

    pub(crate) fn rejected(&self, r: RejectedSend) {
        bump(&self.counters.rejected_sends);
        self.with_lists(|l| l.rejected.push(r));
    }

    pub(crate) fn graph(&self, r: impl FnOnce() -> GraphRequest) {
        bump(&self.counters.graph_requests);
        self.with_lists(|l| l.graph.push(r()));
    }

    pub(crate) fn ai(&self, r: impl FnOnce() -> AiRequest) {
        bump(&self.counters.ai_requests);
        self.with_lists(|l| l.ai.push(r()));
    }

    pub(crate) fn echo(&self, e: EchoDelivery) {
        bump(&self.counters.echoes);
        self.with_lists(|l| l.echoes.push(e));
    }

    pub(crate) fn thread_control(&self, c: ThreadControlCall) {
        self.with_lists(|l| l.thread_control.push(c));
    }

    pub(crate) fn sender_action(&self, a: SenderAction) {
        self.with_lists(|l| l.sender_actions.push(a));
    }

    pub(crate) fn sent_messages(&self) -> Vec<SentMessage> {
        self.read(|l| l.sent.clone())
    }

    pub(crate) fn rejected_sends(&self) -> Vec<RejectedSend> {
        self.read(|l| l.rejected.clone())
    }

    pub(crate) fn graph_requests(&self) -> Vec<GraphRequest> {
        self.read(|l| l.graph.clone())
    }

    pub(crate) fn ai_requests(&self) -> Vec<AiRequest> {
        self.read(|l| l.ai.clone())
    }

    pub(crate) fn echo_deliveries(&self) -> Vec<EchoDelivery> {
        self.read(|l| l.echoes.clone())
    }

    pub(crate) fn thread_control_calls(&self) -> Vec<ThreadControlCall> {
        self.read(|l| l.thread_control.clone())
    }

    pub(crate) fn sender_actions(&self) -> Vec<SenderAction> {
        self.read(|l| l.sender_actions.clone())
    }

    pub(crate) fn counters(&self) -> SimCounters {
        let c = &self.counters;
        SimCounters {
            graph_requests: c.graph_requests.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            rejected_sends: c.rejected_sends.load(Ordering::Relaxed),
            ai_requests: c.ai_requests.load(Ordering::Relaxed),
            echoes: c.echoes.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn clear(&self) {
        *crate::state::lock(&self.lists) = Lists::default();
        let c = &self.counters;
        for counter in [
            &c.graph_requests,
            &c.sent,
            &c.rejected_sends,
            &c.ai_requests,
            &c.echoes,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}
