//! Ingest's SQL, one module per table group. Every value is bound, never formatted into SQL.

pub mod connections;
pub mod conversations;
pub mod customers;
pub mod oauth_states;
