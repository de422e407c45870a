//! Logging setup: `tracing` with an env filter (`RUST_LOG`, default `info`) in text or JSON.
//!
//! Request and job ids travel as span fields, so every line of a unit of work carries them. Nothing here
//! logs payloads: message text and secrets never reach a log line at info level.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}
