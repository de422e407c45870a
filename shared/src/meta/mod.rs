//! Meta's webhook payloads and Graph API: the envelope ingest splits, the events the worker classifies,
//! the Graph client and what its errors mean, and the login flows that connect an account.
//!
//! One place for Meta's formats, so the edge, the worker and the OAuth flow agree on what Meta sends.

pub mod envelope;
pub mod event;
pub mod graph;
pub mod graph_error;
pub mod login;
