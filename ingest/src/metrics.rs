//! Ingest's Prometheus metrics: a struct of handles built once and shared through the app state.
//! Documented in `docs/metrics.md`.

use omnidm_shared::ops::LATENCY_BUCKETS;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// Every outcome a webhook POST can have; pre-registered so dashboards see zeros, not gaps.
pub const OUTCOMES: [&str; 6] = [
    "accepted",
    "bad_signature",
    "oversize",
    "malformed",
    "unavailable",
    "overloaded",
];

/// Handles to ingest's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// `ingest_webhook_requests_total{outcome}`.
    pub requests: IntCounterVec,
    /// `ingest_webhook_request_duration_seconds{outcome}`.
    pub request_duration: HistogramVec,
    /// `ingest_events_published_total{source}`.
    pub events_published: IntCounterVec,
    /// `ingest_publish_confirm_seconds`: from first publish to last confirm of one request.
    pub publish_confirm: prometheus::Histogram,
    /// `ingest_publish_failures_total{reason}`.
    pub publish_failures: IntCounterVec,
    /// `ingest_rejected_bodies_total`: signed bodies kept in the rejected queue.
    pub rejected_bodies: IntCounter,
    /// `ingest_oauth_callbacks_total{outcome}`: how "Connect Instagram" attempts ended.
    pub oauth_callbacks: IntCounterVec,
    /// `ingest_admin_requests_total{status}`: admin API requests by status class.
    pub admin_requests: IntCounterVec,
    /// `ingest_conversation_transitions_total{cause}`: state changes made by people through the API.
    pub transitions: IntCounterVec,
    /// `ingest_operator_replies_total{outcome}`: people's replies through the API (queued, or why not).
    pub operator_replies: IntCounterVec,
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("ingest_webhook_requests_total", "Webhook POSTs by outcome."),
            &["outcome"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "ingest_webhook_request_duration_seconds",
                "Webhook POST handling time.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )
        .expect("valid metric");
        let events_published = IntCounterVec::new(
            Opts::new(
                "ingest_events_published_total",
                "Events confirmed by the broker, by source array.",
            ),
            &["source"],
        )
        .expect("valid metric");
        let publish_confirm = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "ingest_publish_confirm_seconds",
                "Time until all events of a request are confirmed.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let publish_failures = IntCounterVec::new(
            Opts::new(
                "ingest_publish_failures_total",
                "Requests answered 503 because publishing failed, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let rejected_bodies = IntCounter::new(
            "ingest_rejected_bodies_total",
            "Signed bodies that were not a Meta envelope, kept for inspection.",
        )
        .expect("valid metric");
        for outcome in OUTCOMES {
            requests.with_label_values(&[outcome]);
        }
        // Series exist at zero from the start, so `rate()` alerts see a baseline instead of no data.
        for reason in ["unavailable", "nacked", "returned", "timeout", "broker_error"] {
            publish_failures.with_label_values(&[reason]);
        }
        for source in ["messaging", "standby", "changes"] {
            events_published.with_label_values(&[source]);
        }
        let oauth_callbacks = IntCounterVec::new(
            Opts::new(
                "ingest_oauth_callbacks_total",
                "OAuth callbacks by outcome (connected, denied, invalid_state, failed).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for outcome in ["connected", "denied", "invalid_state", "failed"] {
            oauth_callbacks.with_label_values(&[outcome]);
        }
        let admin_requests = IntCounterVec::new(
            Opts::new(
                "ingest_admin_requests_total",
                "Admin API requests by status class (2xx, 4xx, 5xx).",
            ),
            &["status"],
        )
        .expect("valid metric");
        for class in ["2xx", "4xx", "5xx"] {
            admin_requests.with_label_values(&[class]);
        }
        let transitions = IntCounterVec::new(
            Opts::new(
                "ingest_conversation_transitions_total",
                "Conversation state changes made through the API (operator_pause, resumed, operator_reply).",
            ),
            &["cause"],
        )
        .expect("valid metric");
        let operator_replies = IntCounterVec::new(
            Opts::new(
                "ingest_operator_replies_total",
                "Replies people sent through the API, by outcome (queued, or the 409 reason).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        // Series exist at zero from the start, so dashboards and `rate()` see a baseline.
        use omnidm_shared::transitions::{OPERATOR_PAUSE, OPERATOR_REPLY, RESUME};
        for cause in [OPERATOR_PAUSE.cause, RESUME.cause, OPERATOR_REPLY.cause] {
            transitions.with_label_values(&[cause]);
        }
        for outcome in ["queued", "unavailable", "outside_window", "thread_elsewhere"] {
            operator_replies.with_label_values(&[outcome]);
        }
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(events_published.clone()),
            Box::new(publish_confirm.clone()),
            Box::new(publish_failures.clone()),
            Box::new(rejected_bodies.clone()),
            Box::new(oauth_callbacks.clone()),
            Box::new(admin_requests.clone()),
            Box::new(transitions.clone()),
            Box::new(operator_replies.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            request_duration,
            events_published,
            publish_confirm,
            publish_failures,
            rejected_bodies,
            oauth_callbacks,
            admin_requests,
            transitions,
            operator_replies,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
