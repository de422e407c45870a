//! The worker's Prometheus metrics: a struct of handles built once and shared. Documented in
//! `docs/metrics.md`. Labels are low-cardinality (kinds, outcomes, classes), never user or account ids.

use crate::store::batch::BatchMetrics;
use omnidm_shared::ops::LATENCY_BUCKETS;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Handles to the worker's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// `worker_jobs_total{outcome}`.
    pub jobs: IntCounterVec,
    /// `worker_job_duration_seconds{outcome}`.
    pub job_duration: HistogramVec,
    /// `worker_ai_request_duration_seconds`.
    pub ai_duration: Histogram,
    /// `worker_ai_errors_total{kind}`.
    pub ai_errors: IntCounterVec,
    /// `worker_send_duration_seconds`.
    pub send_duration: Histogram,
    /// `worker_send_errors_total{class}`.
    pub send_errors: IntCounterVec,
    /// `worker_messages_sent_total`: chunks Meta accepted.
    pub messages_sent: IntCounter,
    /// `worker_replies_total`: AI answers produced.
    pub replies: IntCounter,
    /// `worker_retries_total{reason}`: jobs sent to a delayed-retry queue.
    pub retries: IntCounterVec,
    /// `worker_dead_lettered_total{reason}`.
    pub dead_lettered: IntCounterVec,
    /// `worker_ignored_events_total{kind}`: events deliberately not answered.
    pub ignored: IntCounterVec,
    /// `worker_unrouted_events_total{reason}`: events for no connected account.
    pub unrouted: IntCounterVec,
    /// `worker_duplicate_events_total`: events whose Meta id was already stored.
    pub duplicates: IntCounter,
    /// `worker_conversations_paused_total`: human takeovers.
    pub paused: IntCounter,
    /// `worker_policy_decisions_total{kind, decision}`: what the reply policy did with each new customer
    /// message (and reaction).
    pub policy: IntCounterVec,
    /// `worker_conversation_transitions_total{cause}`: conversations that changed state, by cause.
    pub transitions: IntCounterVec,
    /// `worker_ai_cost_guards_total{guard}`: replies a cost bound changed (burst_trimmed: older messages
    /// of a burst left out of the AI call; reply_truncated: an answer cut to `MAX_REPLY_CHUNKS`;
    /// rate_limited: a reply held back by `AI_REPLIES_PER_MINUTE`).
    pub cost_guards: IntCounterVec,
    /// `worker_escalations_total`: conversations the AI handed to a person.
    pub escalations: IntCounter,
    /// `worker_handover_events_total{action, outcome}`: Handover Protocol events and calls.
    pub handover: IntCounterVec,
    /// `worker_notifications_total{outcome}`: delivery attempts of notifications to businesses.
    pub notifications: IntCounterVec,
    /// `worker_reply_latency_seconds`: from the customer's message (Meta timestamp) to our reply sent.
    pub reply_latency: Histogram,
    /// `worker_reply_overhead_seconds`: a reply pass's own time, excluding AI and Send API calls.
    pub reply_overhead: Histogram,
    /// `worker_credentials{status}`: connected accounts by status (set by the token lifecycle job).
    pub credentials: IntGaugeVec,
    /// `worker_token_refresh_total{outcome}`: Instagram token refreshes.
    pub token_refresh: IntCounterVec,
    /// `worker_reconcile_runs_total{outcome}`: account checks against the Conversations API.
    pub reconcile_runs: IntCounterVec,
    /// `worker_recovered_messages_total`: DMs that never came by webhook, found by the reconciler.
    pub recovered: IntCounter,
    /// `worker_missed_messages_total`: recovered DMs too old to answer (outside the 24-hour window).
    pub missed: IntCounter,
    /// `worker_resubscriptions_total`: webhook subscriptions found gone and restored.
    pub resubscriptions: IntCounter,
    /// `worker_webhook_silence_max_seconds`: longest time since the last webhook among active accounts.
    pub webhook_silence: Gauge,
    /// `worker_db_batches_total{write}`: statements that wrote a batch of rows for many jobs.
    pub db_batches: IntCounterVec,
    /// `worker_db_batched_rows_total{write}`: rows those statements wrote (÷ batches = mean batch size).
    pub db_batched_rows: IntCounterVec,
}

/// The `write` labels of the batch counters (see `crate::store::Writes`).
const BATCHED_WRITES: [&str; 5] = ["lease", "store_message", "reply", "reply_sent", "echo"];

/// The batch counters of one kind of write, as a [`BatchMetrics`] for its batcher.
pub struct WriteBatches {
    batches: IntCounter,
    rows: IntCounter,
}

impl Metrics {
    /// The batch counters for the write labelled `write`.
    pub fn write_batches(&self, write: &str) -> WriteBatches {
        WriteBatches {
            batches: self.db_batches.with_label_values(&[write]),
            rows: self.db_batched_rows.with_label_values(&[write]),
        }
    }
}

impl BatchMetrics for WriteBatches {
    fn batch(&self, rows: usize) {
        self.batches.inc();
        self.rows.inc_by(rows as u64);
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str, values: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    for value in values {
        metric.with_label_values(&[value]);
    }
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn labelled(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))
        .expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let job_duration = HistogramVec::new(
            HistogramOpts::new(
                "worker_job_duration_seconds",
                "Time to process one job, by outcome.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )
        .expect("valid metric");
        r.register(Box::new(job_duration.clone())).expect("unique metric");
        let credentials = IntGaugeVec::new(
            Opts::new(
                "worker_credentials",
                "Connected accounts by status (active, expiring, reauth_required, disconnected).",
            ),
            &["status"],
        )
        .expect("valid metric");
        for status in omnidm_shared::states::CredentialStatus::ALL
            .iter()
            .map(|s| s.as_str())
        {
            credentials.with_label_values(&[status]);
        }
        r.register(Box::new(credentials.clone())).expect("unique metric");
        let webhook_silence = Gauge::new(
            "worker_webhook_silence_max_seconds",
            "Longest time since the last webhook among active accounts (since connecting if none yet).",
        )
        .expect("valid metric");
        r.register(Box::new(webhook_silence.clone()))
            .expect("unique metric");
        Self {
            webhook_silence,
            db_batches: counter_vec(
                &r,
                "worker_db_batches_total",
                "Statements that wrote the rows of many jobs at once, by write.",
                "write",
                &BATCHED_WRITES,
            ),
            db_batched_rows: counter_vec(
                &r,
                "worker_db_batched_rows_total",
                "Rows written by batched statements, by write (divided by batches: the mean batch size).",
                "write",
                &BATCHED_WRITES,
            ),
            reconcile_runs: counter_vec(
                &r,
                "worker_reconcile_runs_total",
                "Account checks against the Conversations API, by outcome.",
                "outcome",
                &["ok", "error"],
            ),
            recovered: counter(
                &r,
                "worker_recovered_messages_total",
                "DMs no webhook delivered, recovered through the Conversations API.",
            ),
            missed: counter(
                &r,
                "worker_missed_messages_total",
                "Recovered DMs older than the 24-hour window, stored but not answered.",
            ),
            resubscriptions: counter(
                &r,
                "worker_resubscriptions_total",
                "Webhook subscriptions found missing and restored.",
            ),
            credentials,
            token_refresh: counter_vec(
                &r,
                "worker_token_refresh_total",
                "Instagram token refreshes by outcome.",
                "outcome",
                &["refreshed", "failed", "reauth_required"],
            ),
            jobs: counter_vec(
                &r,
                "worker_jobs_total",
                "Jobs processed, by outcome.",
                "outcome",
                &["done", "retried", "dead_lettered", "requeued"],
            ),
            job_duration,
            ai_duration: histogram(
                &r,
                "worker_ai_request_duration_seconds",
                "AI chat-completion latency (including in-process retries).",
            ),
            ai_errors: counter_vec(
                &r,
                "worker_ai_errors_total",
                "AI calls that gave no answer, by kind (transient, context_too_long, permanent).",
                "kind",
                &["transient", "context_too_long", "permanent"],
            ),
            send_duration: histogram(&r, "worker_send_duration_seconds", "Send API call latency."),
            send_errors: counter_vec(
                &r,
                "worker_send_errors_total",
                "Send API errors by class.",
                "class",
                &[
                    "transient",
                    "throttled",
                    "token_dead",
                    "outside_window",
                    "user_unreachable",
                    "sent_but_error",
                    "permanent",
                ],
            ),
            messages_sent: counter(&r, "worker_messages_sent_total", "Message chunks Meta accepted."),
            replies: counter(
                &r,
                "worker_replies_total",
                "AI answers produced (each sent as one or more chunks).",
            ),
            retries: counter_vec(
                &r,
                "worker_retries_total",
                "Jobs sent to a delayed-retry queue, by reason.",
                "reason",
                &[
                    "ai",
                    "send",
                    "throttled",
                    "conversation_busy",
                    "echo_unmatched",
                    "awaiting_echo",
                    "internal",
                ],
            ),
            dead_lettered: counter_vec(
                &r,
                "worker_dead_lettered_total",
                "Jobs parked in the dead-letter queue, by reason.",
                "reason",
                &["retry_budget", "unparseable"],
            ),
            ignored: counter_vec(
                &r,
                "worker_ignored_events_total",
                "Events deliberately not answered, by kind.",
                "kind",
                &[],
            ),
            unrouted: counter_vec(
                &r,
                "worker_unrouted_events_total",
                "Events for no connected account, by reason.",
                "reason",
                &["dashboard_test", "unknown_account"],
            ),
            duplicates: counter(
                &r,
                "worker_duplicate_events_total",
                "Events whose Meta message id was already stored (redeliveries).",
            ),
            paused: counter(
                &r,
                "worker_conversations_paused_total",
                "Conversations where a human answered and the AI paused.",
            ),
            policy: {
                let policy = labelled(
                    &r,
                    "worker_policy_decisions_total",
                    "New customer messages by kind and what the reply policy decided (ai, record, fixed_reply).",
                    &["kind", "decision"],
                );
                // Each kind's default decision exists at zero from the start (12 series).
                for kind in omnidm_shared::policy::MessageKind::ALL {
                    let decision = omnidm_shared::policy::ReplyPolicy::default_for(kind);
                    policy.with_label_values(&[kind.as_str(), decision.label()]);
                }
                policy
            },
            transitions: counter_vec(
                &r,
                "worker_conversation_transitions_total",
                "Conversations that changed state (bot, paused, escalated, elsewhere), by cause.",
                "cause",
                &omnidm_shared::transitions::ALL.map(|t| t.cause),
            ),
            cost_guards: counter_vec(
                &r,
                "worker_ai_cost_guards_total",
                "Replies a cost bound changed: burst_trimmed (older messages left out of the AI call), reply_truncated (answer cut to MAX_REPLY_CHUNKS), rate_limited (held back by AI_REPLIES_PER_MINUTE).",
                "guard",
                &["burst_trimmed", "reply_truncated", "rate_limited"],
            ),
            escalations: counter(
                &r,
                "worker_escalations_total",
                "Conversations the AI handed to a person (handoff_to_human).",
            ),
            handover: labelled(
                &r,
                "worker_handover_events_total",
                "Handover Protocol events received and thread-control calls made, by action and outcome.",
                &["action", "outcome"],
            ),
            notifications: counter_vec(
                &r,
                "worker_notifications_total",
                "Attempts to deliver a notification to a business's notifyUrl, by outcome.",
                "outcome",
                &["delivered", "retry", "failed"],
            ),
            reply_latency: histogram(
                &r,
                "worker_reply_latency_seconds",
                "From the customer's message (Meta timestamp) to our reply accepted by Meta.",
            ),
            reply_overhead: histogram(
                &r,
                "worker_reply_overhead_seconds",
                "A reply pass's own time, excluding AI and Send API calls.",
            ),
            registry: r,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
