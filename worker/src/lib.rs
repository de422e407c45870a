//! Worker: consumes Meta events from RabbitMQ and turns customers' messages into AI replies sent through
//! Instagram, once, in order, surviving crashes, redeliveries, AI outages and Meta's throttling.
//!
//! Stages have their own modules: [`handle`] (classify, route, persist, reply policy), [`reply`] (lease,
//! debounce, AI, send, escalation), [`echo`] (our echoes vs a human's), [`handover`] (who owns the
//! thread), [`notify`] (notifications to businesses), [`consumer`] (ack, delayed retry, dead letters),
//! [`resume`] (an account back from `reauth_required`), [`lifecycle`] (token refresh and checks),
//! [`reconcile`] (DMs no webhook delivered, and lost webhook subscriptions).

pub mod ai;
pub mod app;
pub use omnidm_shared::chunk;
pub mod consumer;
pub mod context;
pub mod dead_letters;
pub mod echo;
pub mod graph;
pub mod handle;
pub mod handover;
pub mod lifecycle;
pub mod metrics;
pub mod notify;
pub mod reconcile;
pub mod reply;
pub mod resume;
pub mod store;

pub use app::Application;
