//! Ingest: Meta's webhooks in, durable jobs out.
//!
//! Verify the signature over the raw bytes, split the batch into one job per event, publish each with
//! publisher confirms, and only then answer 200. Everything the binary does lives here so tests drive
//! the same code through [`Application`] or [`app::router`].

pub mod app;
pub mod metrics;
pub mod publish;
pub mod routes;

pub use app::{AppState, Application};
