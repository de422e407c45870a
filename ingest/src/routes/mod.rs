//! HTTP routes of ingest.

pub mod webhook;
