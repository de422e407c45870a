//! Ingest: Meta's webhooks in, durable jobs out.
//!
//! Verify the signature over the raw bytes, split the batch into one job per event, publish each with
//! publisher confirms, and only then answer 200. Ingest is also the public edge for people: the
//! "Connect Instagram" OAuth flow ([`connect`]), the admin API ([`api`]) and the integrations page
//! ([`dashboard`]). Everything the binary does lives here so tests drive
//! the same code through [`Application`] or [`app::router`].

pub mod api;
pub mod app;
pub mod connect;
pub mod dashboard;
pub mod db;
pub mod metrics;
pub mod operator;
pub mod publish;
pub mod routes;
pub mod serve;
pub mod store;

pub use app::{AppState, Application};
