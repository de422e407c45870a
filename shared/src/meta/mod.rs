//! Meta's webhook payloads and Graph API errors: the envelope ingest splits, the events the worker
//! classifies, and what a Graph error means.
//!
//! One place for Meta's formats, so the edge, the worker and the OAuth flow agree on what Meta sends.

pub mod envelope;
pub mod event;
pub mod graph_error;
